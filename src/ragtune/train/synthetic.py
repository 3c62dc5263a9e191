"""LLM-written training queries for a knowledge base's chunks, kept only when retrieval finds their chunk again.

For users without labelled queries: an LLM writes questions that each chunk answers; the replies are parsed
robustly (JSON lists, numbered or bulleted lines), de-duplicated across the whole KB, and filtered by a
round trip — a question whose source chunk the KB's own retriever does not rank in its top k is dropped,
because it is either unanswerable from the chunk or answered equally well elsewhere.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ragtune.errors import ConfigError
from ragtune.retrieve.rewrite import parse_queries
from ragtune.text import detect_language
from ragtune.types import Hit

log = logging.getLogger(__name__)

SYNTH_PROMPT = (
    "Write {n} different questions that a user of this knowledge base could ask and that the passage below "
    "answers. Each question must make sense on its own (name the subject, no 'this passage'), must be answerable "
    "from the passage alone, and must not copy its sentences. Reply with a JSON list of strings only.\n\n"
    "Passage:\n{passage}"
)
SYNTH_PROMPT_ZH = (
    "请为下面的段落写出 {n} 个不同的问题：知识库的用户可能会问，并且这段话能够回答。每个问题都要能独立理解"
    "（写明主题，不要说“本段”），只凭这段话就能回答，不要照抄原句。只回复一个由字符串组成的 JSON 列表。\n\n"
    "段落：\n{passage}"
)


def synth_prompt(passage: str, n: int) -> str:
    """The prompt asking for ``n`` questions about ``passage``, in its language (Chinese or English)."""
    return (SYNTH_PROMPT_ZH if detect_language(passage) == "zh" else SYNTH_PROMPT).format(n=n, passage=passage)

ProgressFn = Callable[[int, int], None]


@dataclass
class SyntheticQuery:
    """A generated question and the chunk that answers it (a training pair with text and ids)."""

    query: str
    positive: str
    chunk_id: str
    document_id: str
    rank: int
    source: str = "synthetic"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SynthReport:
    """What happened to the generated questions."""

    chunks: int = 0
    generated: int = 0
    duplicates: int = 0
    not_found: int = 0
    kept: int = 0
    failed_chunks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def knowledge_base_chunks(kb: Any, limit: int = 0) -> Iterator[Hit]:
    """Every chunk of the KB's healthy documents, document by document, in order (``limit``: at most N)."""
    count = 0
    for record in kb.documents():
        if record.status != "ok":
            continue
        for hit in kb.store.document_chunks(record.id):
            yield hit
            count += 1
            if limit and count >= limit:
                return


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold().rstrip("?.! ")


def synth_queries(
    kb: Any, *, per_chunk: int = 2, top_k: int = 5, mode: str = "hybrid", limit: int = 0, sample: int = 0,
    seed: int = 0, min_words: int = 3, max_tokens: int | None = None, batch_size: int = 16,
    on_progress: ProgressFn | None = None, chunks: Sequence[Hit] | None = None, deadline: float | None = None,
) -> tuple[list[SyntheticQuery], SynthReport]:
    """Questions for the KB's chunks (up to ``per_chunk`` each) that pass the round trip: the chunk is among the
    ``top_k`` hits of ``mode`` retrieval for the question. Uses ``kb.llm`` through ``kb.llm_client()`` (cached).

    ``limit`` takes the first N chunks; ``sample`` takes N chunks at random (``seed``) from the whole KB, which
    covers every part of a large collection at the same LLM cost. The LLM writes for ``batch_size`` chunks
    at a time (batched on the local model); replies are cached, so an interrupted run resumes.

    ``chunks`` gives the chunks to write for instead (in that order); with a ``deadline`` (a ``time.monotonic()``
    value) no new batch starts after it, so a time budget bounds the LLM's work."""
    if per_chunk <= 0:
        raise ConfigError("per_chunk must be greater than 0.")
    if top_k <= 0:
        raise ConfigError("top_k must be greater than 0.")
    if sample < 0 or limit < 0:
        raise ConfigError("limit and sample must not be negative.")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be greater than 0, got {batch_size}.")
    client = kb.llm_client()
    if chunks is None:
        chunks = list(knowledge_base_chunks(kb, limit))
        if sample and sample < len(chunks):
            picked = sorted(random.Random(seed).sample(range(len(chunks)), sample))
            chunks = [chunks[i] for i in picked]
    report = SynthReport(chunks=len(chunks))
    seen: set[str] = set()
    kept: list[SyntheticQuery] = []
    for start in range(0, len(chunks), batch_size):
        if deadline is not None and time.monotonic() > deadline:
            log.info("synthetic queries: time budget used after %d of %d chunks", start, len(chunks))
            report.chunks = start
            break
        batch = chunks[start : start + batch_size]
        replies = client.generate_many([synth_prompt(c.text, per_chunk) for c in batch],
                                         max_tokens=max_tokens or 48 * per_chunk + 32, batch_size=batch_size)
        for chunk, reply in zip(batch, replies, strict=True):
            _keep_questions(kb, chunk, reply, per_chunk=per_chunk, top_k=top_k, mode=mode, min_words=min_words,
                            seen=seen, kept=kept, report=report)
        if on_progress:
            on_progress(start + len(batch), len(chunks))
    report.kept = len(kept)
    log.info("synthetic queries: %s", report.to_dict())
    return kept, report


def _keep_questions(
    kb: Any, chunk: Any, reply: str | Exception, *, per_chunk: int, top_k: int, mode: str, min_words: int,
    seen: set[str], kept: list[SyntheticQuery], report: SynthReport,
) -> None:
    """The questions of one reply that are new, long enough, not an echo of the chunk, and find it again."""
    if isinstance(reply, Exception):  # one failed reply must not lose the questions of every other chunk
        log.warning("no questions for chunk %s: %s", chunk.chunk_id, reply)
        report.failed_chunks.append(chunk.chunk_id)
        return
    for question in parse_queries(reply, per_chunk):
        report.generated += 1
        key = _norm(question)
        if key in seen or len(question.split()) < min_words or _norm(chunk.text).find(key) >= 0:
            report.duplicates += 1
            continue
        seen.add(key)
        hits = kb.retrieve(question, top_k, mode=mode, rewrite="none", rerank=False).hits
        rank = next((i + 1 for i, h in enumerate(hits) if h.chunk_id == chunk.chunk_id), 0)
        if not rank:
            report.not_found += 1
            continue
        kept.append(SyntheticQuery(question, chunk.text, chunk.chunk_id, chunk.document_id, rank))
