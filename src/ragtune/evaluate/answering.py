"""Answer evaluation questions with a knowledge base's own pipeline, caching each answer so a run resumes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune.evaluate.samples import RagSample
from ragtune.llm.cached import LLMCache

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]

# Settings that cannot change an answer: where the server listens, keys, upload limits.
_IRRELEVANT = re.compile(r"^(server_|cors_|max_upload|max_archive|rate_limit|llm_api_key$|num_threads$)")
_AT_K = re.compile(r"@([1-9][0-9]*)$")


def cache_directory(kb: Any, cache: str | Path | bool | None) -> Path | None:
    """Where answers and judge replies are kept: ``cache`` when a path, none when False, else the KB's
    cache folder or ~/.cache/ragtune/eval (``RAGTUNE_CACHE`` overrides ~/.cache/ragtune)."""
    if cache is False:
        return None
    if cache is not None and cache is not True:
        return Path(cache)
    if kb is not None:
        return Path(kb.path) / "cache" / "eval"
    root = os.environ.get("RAGTUNE_CACHE") or Path.home() / ".cache" / "ragtune"
    return Path(root) / "eval"


def kb_fingerprint(kb: Any) -> str:
    """A hash of what decides a KB's answers: its documents' contents, its settings and ragtune's version."""
    from ragtune import __version__

    documents = sorted((d.uri, d.content_hash or "", d.status) for d in kb.documents())
    settings = {k: v for k, v in kb.settings.model_dump(mode="json").items() if not _IRRELEVANT.match(k)}
    payload = json.dumps([documents, settings, __version__], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def ranking_depth(metrics: Sequence[str]) -> int:
    """The deepest K among ``context_recall@K`` / ``context_precision@K`` (0 when none is asked for)."""
    return max((int(m.group(1)) for name in metrics if (m := _AT_K.search(name))), default=0)


def answer_questions(
    kb: Any, samples: Sequence[RagSample], *, metrics: Sequence[str] = (), cache_dir: Path | None = None,
    on_progress: ProgressFn | None = None,
) -> list[RagSample]:
    """Each question answered by ``kb.ask`` (its contexts, citations, refusal and stage timings recorded), plus
    a retrieval ranking as deep as the ``@K`` metrics need. Answers are cached under ``cache_dir`` keyed by the
    question and the KB's fingerprint, so a second run, or one resumed after an interruption, reuses them."""
    fingerprint = kb_fingerprint(kb)
    depth = ranking_depth(metrics)
    cache = LLMCache(cache_dir / "answers.sqlite") if cache_dir is not None else None
    answered: list[RagSample] = []
    try:
        for done, sample in enumerate(samples, start=1):
            key = hashlib.sha256(json.dumps([sample.user_input, fingerprint, depth]).encode()).hexdigest()
            stored = cache.get(key) if cache is not None else None
            if stored is not None:
                fields = json.loads(stored)
            else:
                fields = _answer(kb, sample.user_input, depth)
                if cache is not None:
                    cache.put(key, json.dumps(fields, ensure_ascii=False))
            answered.append(sample.model_copy(update=fields))
            if on_progress:
                on_progress("answering", done, len(samples))
    finally:
        if cache is not None:
            cache.close()
    return answered


def _answer(kb: Any, question: str, depth: int) -> dict[str, Any]:
    answer = kb.ask(question)
    fields: dict[str, Any] = {
        "response": answer.answer, "refused": answer.refused,
        "retrieved_contexts": [hit.text for hit in answer.sources],
        "retrieved_context_ids": [hit.chunk_id for hit in answer.sources],
        "retrieved_context_sources": [hit.source for hit in answer.sources],
        "timings_ms": dict(answer.timings),
    }
    if depth:
        hits = kb.retrieve(question, depth).hits
        fields["ranked_contexts"] = [hit.text for hit in hits]
        fields["ranked_context_ids"] = [hit.chunk_id for hit in hits]
        fields["ranked_context_sources"] = [hit.source for hit in hits]
    return fields
