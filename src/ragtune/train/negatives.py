"""Training pairs and hard negatives mined from ragtune's own retriever, for rerankers and embedders.

A hard negative is a passage the retriever ranks high for a query that is not its answer. Two rules keep
them honest: a negative is never one of the query's positives (by chunk, by document, or by identical
text), and a candidate scored almost as high as the positive (dense similarity above ``margin`` × the
positive's) is dropped as a likely unlabelled positive (the "TopK-PercPos" filter of NV-Retriever).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError
from ragtune.evaluate.lm import rouge_tokens
from ragtune.jsonl import read_jsonl
from ragtune.llm.cached import CachedLLM
from ragtune.text import detect_language
from ragtune.types import Hit

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class TrainingPair:
    """A query and its positive passage. An empty ``positive`` means: the best-ranked chunk of the
    positive documents (``document_ids``). ``chunk_ids`` and ``document_ids`` are never negatives."""

    query: str
    positive: str = ""
    query_id: str = ""
    chunk_ids: tuple[str, ...] = ()
    document_ids: tuple[str, ...] = ()


@dataclass
class Triplet:
    """A query, its positive, and hard negatives; ``source`` says where the negatives came from."""

    query: str
    positive: str
    negatives: list[str]
    source: str = "mined"
    query_id: str = ""
    positive_id: str = ""
    negative_ids: list[str] = field(default_factory=list)
    dropped_by_margin: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def mine_hard_negatives(
    kb: Any, pairs: Sequence[TrainingPair], *, n_negatives: int = 4, rank_window: tuple[int, int] = (3, 50),
    margin: float | None = 0.95, mode: str = "hybrid", on_progress: ProgressFn | None = None,
) -> list[Triplet]:
    """One triplet per pair that has a positive and at least one negative, negatives taken in rank order
    from ranks ``rank_window`` (1-based, inclusive) of ``kb``'s retriever (no rewrite, no reranker)."""
    first, last = rank_window
    if not 1 <= first <= last:
        raise ConfigError(f"rank_window must be (first, last) with 1 <= first <= last, got {rank_window}")
    if n_negatives <= 0:
        raise ConfigError("n_negatives must be greater than 0.")
    if margin is not None and not 0 < margin <= 1:
        raise ConfigError(f"margin must be in (0, 1] (or None to switch the filter off), got {margin}")
    triplets: list[Triplet] = []
    skipped = 0
    for n, pair in enumerate(pairs):
        hits = kb.retrieve(pair.query, last, mode=mode, candidates=max(last, 100), rewrite="none",
                           rerank=False).hits
        positive, positive_id = _positive(kb, pair, hits)
        if not positive:
            skipped += 1
            continue
        candidates = [h for h in hits[first - 1 :] if not _is_positive(h, pair, positive)]
        dropped = 0
        if margin is not None and candidates:
            candidates, dropped = _margin_filter(kb, pair.query, positive, positive_id, candidates, margin)
        chosen = candidates[:n_negatives]
        if chosen:
            triplets.append(Triplet(
                pair.query, positive, [h.text for h in chosen], "mined", pair.query_id, positive_id,
                [h.chunk_id for h in chosen], dropped,
            ))
        else:
            skipped += 1
        if on_progress:
            on_progress(n + 1, len(pairs))
    if skipped:
        log.info("hard-negative mining: %d of %d pairs gave no triplet (no positive found or no negative left)",
                 skipped, len(pairs))
    return triplets


def _positive(kb: Any, pair: TrainingPair, hits: list[Hit]) -> tuple[str, str]:
    if pair.positive:
        return pair.positive, pair.chunk_ids[0] if pair.chunk_ids else ""
    wanted = set(pair.document_ids)
    for hit in hits:
        if hit.chunk_id in pair.chunk_ids or hit.document_id in wanted:
            return hit.text, hit.chunk_id
    for doc_id in pair.document_ids:  # not retrieved: the document's first chunk
        chunks = kb.store.document_chunks(doc_id)
        if chunks:
            return chunks[0].text, chunks[0].chunk_id
    return "", ""


def _is_positive(hit: Hit, pair: TrainingPair, positive: str) -> bool:
    return (hit.chunk_id in pair.chunk_ids or hit.document_id in pair.document_ids
            or _norm(hit.text) == _norm(positive))


def _margin_filter(
    kb: Any, query: str, positive: str, positive_id: str, candidates: list[Hit], margin: float
) -> tuple[list[Hit], int]:
    """Candidates whose dense similarity to the query stays below ``margin`` × the positive's."""
    q = kb.embedder.encode_queries([query])[0]
    stored = kb.store.vectors([h.chunk_id for h in candidates] + ([positive_id] if positive_id else []))
    pos_vec = stored.get(positive_id) if positive_id else None
    if pos_vec is None:
        pos_vec = kb.embedder.encode_documents([positive])[0]
    threshold = margin * float(np.dot(q, pos_vec))
    kept = []
    for hit in candidates:
        vec = stored.get(hit.chunk_id)
        if vec is None:
            continue
        if float(np.dot(q, vec)) < threshold:
            kept.append(hit)
    return kept, len(candidates) - len(kept)


def read_pairs(path: str | Path) -> list[TrainingPair]:
    """Pairs from JSON lines with ``query`` and ``positive`` (text) and/or ``chunk_id`` / ``document_id``."""
    path = Path(path)
    pairs = []
    missing = "give one {\"query\", \"positive\"} JSON object per line"
    for lineno, row in read_jsonl(path, what="pairs", missing=missing):
        if not str(row.get("query", "")).strip():
            raise ConfigError(f"{path}:{lineno}: each line needs a non-empty \"query\"")
        chunk_ids = tuple(_as_list(row.get("chunk_id") or row.get("chunk_ids")))
        doc_ids = tuple(_as_list(row.get("document_id") or row.get("document_ids")))
        positive = str(row.get("positive") or "")
        if not positive and not chunk_ids and not doc_ids:
            raise ConfigError(f"{path}:{lineno}: give the positive as \"positive\" (text), \"chunk_id\" or "
                              "\"document_id\"")
        pairs.append(TrainingPair(str(row["query"]), positive, str(row.get("query_id", "")), chunk_ids, doc_ids))
    if not pairs:
        raise ConfigError(f"{path}: no pairs in the file")
    return pairs


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def read_triplets(path: str | Path) -> list[Triplet]:
    """Triplets from JSON lines with ``query``, ``positive`` (text) and ``negatives`` (list of texts, may be
    empty), as written by ``ragtune data mine-negatives`` or ``gen-negatives``."""
    path = Path(path)
    triplets = []
    missing = "write one with 'ragtune data mine-negatives' or 'ragtune data gen-negatives'"
    for lineno, row in read_jsonl(path, what="triplets", missing=missing):
        if not str(row.get("query", "")).strip() or not str(row.get("positive", "")):
            raise ConfigError(f"{path}:{lineno}: each line needs a non-empty \"query\" and \"positive\" (text)")
        negatives = row.get("negatives", [])
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise ConfigError(f"{path}:{lineno}: \"negatives\" must be a list of passage texts")
        triplets.append(Triplet(str(row["query"]), str(row["positive"]), [n for n in negatives if n.strip()],
                                str(row.get("source", "mined")), str(row.get("query_id", ""))))
    if not triplets:
        raise ConfigError(f"{path}: no triplets in the file")
    return triplets


GENERATE_NEGATIVE_PROMPT = (
    "Below are a question and a passage that answers it. Write a new passage on the same topic, in similar "
    "wording and of similar length, that looks like it answers the question but is wrong in the key detail "
    "(change a number, name, date, condition or outcome). Do not mention that anything was changed. Reply "
    "with the new passage only.{avoid}\n\nQuestion: {query}\nPassage: {positive}"
)
GENERATE_NEGATIVE_PROMPT_ZH = (
    "下面是一个问题和能回答它的段落。请写一段新的文字：主题相同、措辞相似、长度相近，看起来像是在回答这个问题，"
    "但关键细节是错的（改动一个数字、名称、日期、条件或结果）。不要说明改动了什么。只回复这段新文字。{avoid}\n\n"
    "问题：{query}\n段落：{positive}"
)


def negative_prompt(pair: TrainingPair, earlier: Sequence[str]) -> str:
    """The prompt for one more generated negative, in the language of the positive (Chinese or English)."""
    zh = detect_language(pair.positive) == "zh"
    avoid = ""
    if earlier:
        avoid = ("它必须与这些段落不同：" if zh else " It must differ from these passages: ") + " | ".join(earlier)
    return (GENERATE_NEGATIVE_PROMPT_ZH if zh else GENERATE_NEGATIVE_PROMPT).format(
        avoid=avoid, query=pair.query, positive=pair.positive)


def generate_negatives(
    client: CachedLLM, pairs: Sequence[TrainingPair], *, per_query: int = 1, max_tokens: int = 160,
    batch_size: int = 16, on_progress: ProgressFn | None = None,
) -> list[Triplet]:
    """LLM-written "plausible but wrong" passages (same topic, similar wording, wrong key detail) for pairs with
    a text positive, through ``client.generate_many`` (cached, batched on a local model, so a re-run resumes).
    Replies that cannot serve as a negative (see ``_usable_negative``: copies of the positive, echoes of the
    question or instruction, loops) are dropped; pairs left with none give no triplet."""
    if per_query <= 0:
        raise ConfigError("per_query must be greater than 0.")
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be greater than 0, got {batch_size}.")
    for pair in pairs:
        if not pair.positive:
            raise ConfigError(f"pair '{pair.query[:60]}' has no positive text — generated negatives need the passage; "
                              "use the output of 'ragtune data synth-queries' or 'ragtune data mine-negatives'")
    from ragtune.retrieve.rewrite import parse_passage

    triplets: list[Triplet] = []
    dropped = 0
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        found: list[list[str]] = [[] for _ in batch]
        for _ in range(per_query):
            prompts = [negative_prompt(pair, negatives) for pair, negatives in zip(batch, found, strict=True)]
            replies = client.generate_many(prompts, max_tokens=max_tokens, batch_size=batch_size)
            for pair, negatives, reply in zip(batch, found, replies, strict=True):
                if isinstance(reply, Exception):
                    log.warning("no negative for '%s': %s", pair.query[:60], reply)
                    continue
                passage = _ECHO.split(_PREAMBLE.sub("", parse_passage(reply)), 1)[0].strip()
                if _usable_negative(passage, pair, negatives):
                    negatives.append(passage)
                elif passage:
                    dropped += 1
        triplets.extend(Triplet(pair.query, pair.positive, negatives, "generated", pair.query_id,
                                pair.chunk_ids[0] if pair.chunk_ids else "")
                        for pair, negatives in zip(batch, found, strict=True) if negatives)
        if on_progress:
            on_progress(start + len(batch), len(pairs))
    if len(triplets) < len(pairs) or dropped:
        log.info("generated negatives: %d of %d pairs got none; %d replies dropped as copies or loops",
                 len(pairs) - len(triplets), len(pairs), dropped)
    return triplets


# Small models open with a line about what follows ("Here is a new passage that ...:"), and go on to echo
# the prompt's labels ("Question: ...") after the passage.
_PREAMBLE = re.compile(r"^\s*(?:sure|okay|certainly|here(?:'s| is| are)|(?:the |a )?new passage|以下是|好的)\b"
                       r"[^\n]*?[:：]\s*(?:\n|$)", re.IGNORECASE)
# ... or restate the question instead of writing a passage.
_RESTATED = re.compile(r"^\s*(?:(?:the )?(?:question|query)(?: is)?|问题(?:是)?)\s*[:：]", re.IGNORECASE)
_ECHO = re.compile(r"\n\s*(?:Question|Passage|Answer|问题|段落|答案)\s*[:：]")


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def _instruction(prompt: str) -> list[str]:
    return rouge_tokens(prompt.split("{avoid}")[0])


# Runs of the instruction: a reply holding one repeats what it was asked to do. Word 4-grams in English;
# Chinese is compared by character, where 4 characters are a common phrase, so there it takes 6.
_INSTRUCTION_GRAMS = {*_ngrams(_instruction(GENERATE_NEGATIVE_PROMPT), 4),
                      *_ngrams(_instruction(GENERATE_NEGATIVE_PROMPT_ZH), 6)}


def _usable_negative(passage: str, pair: TrainingPair, earlier: Sequence[str]) -> bool:
    """A generated passage that can serve as a negative. Dropped: under 3 words; the positive or an earlier
    negative; a restated question or an echo of the instruction; a loop (under half of its word trigrams
    distinct); and a copy, where nothing new was written: every word is from the positive or the query and
    at least 80 % of the trigrams are too (an excerpt, or the question stitched to an excerpt). A changed
    number or name brings a new word, so the negatives the prompt asks for pass."""
    words = rouge_tokens(passage)  # CJK by character, everything else by word
    grams = _ngrams(words, 3)
    if not grams or _RESTATED.match(passage) or _norm(passage) in {_norm(pair.positive), *(_norm(t) for t in earlier)}:
        return False
    if _INSTRUCTION_GRAMS & {*_ngrams(words, 4), *_ngrams(words, 6)} or len(set(grams)) < 0.5 * len(grams):
        return False
    positive, query = rouge_tokens(pair.positive), rouge_tokens(pair.query)
    if set(words) <= {*positive, *query}:
        known = {*_ngrams(positive, 3), *_ngrams(query, 3)}
        return sum(g not in known for g in grams) > 0.2 * len(grams)
    return True
