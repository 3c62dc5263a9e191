"""Distilling a cross-encoder into the embedder (MarginMSE): the teacher's score margins as training labels.

A cross-encoder reads the question and the passage together and ranks better than the bi-encoder, but it costs
a model call per candidate at query time. MarginMSE (Hofstätter et al., 2020) trains the bi-encoder so that for
each (query, positive, negative) the gap between its two similarities matches the teacher's gap between its two
scores: the reranker's ordering moves into the vectors, and queries cost what they cost before.

The teacher's raw scores (logits, no activation: a sigmoid would squash confident margins to ±1) are computed
once per distinct (query, passage) pair and kept in a JSONL file in the run directory, so an interrupted run
resumes without scoring again. The student's similarities are cosines in [-1, 1] while logits span tens, so the
margins are rescaled to the student's spread (``teacher_scale``; 0 = fitted: the ratio of the standard
deviations of the student's and the teacher's scores over the training pairs, measured before training).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import ConfigError

log = logging.getLogger(__name__)

TEACHER_SCORES = "teacher_scores.jsonl"
ProgressFn = Callable[[int, int], None]


@dataclass
class Margins:
    """One label per (query, positive, negative) row, the scale applied to the teacher's margins, and how many
    pairs the teacher scored in this call (the rest came from the run's cache)."""

    labels: list[float]
    scale: float
    scored: int
    pairs: int


def _key(query: str, passage: str, teacher: str = "") -> str:
    """A pair's key in the cache; ``teacher`` (its weights' hash, max_length) keeps other teachers' scores apart."""
    return hashlib.sha1(f"{teacher}\x00{query}\x00{passage}".encode()).hexdigest()


def check_teacher(path: str) -> Path:
    """The teacher's directory, or a ConfigError that says what to give."""
    if not path:
        raise ConfigError("loss.kind = 'margin_mse' needs loss.teacher — a cross-encoder directory, e.g. one "
                          "trained by 'ragtune train reranker'")
    directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise ConfigError(f"loss.teacher '{path}' is not a cross-encoder directory (no config.json) — train one "
                          "with 'ragtune train reranker' or give a local HF cross-encoder directory")
    return directory


def teacher_scores(
    teacher: str, pairs: Sequence[tuple[str, str]], cache: Path, *, max_length: int = 256, batch_size: int = 32,
    on_progress: ProgressFn | None = None,
) -> tuple[dict[str, float], int]:
    """The teacher's logit for each distinct (query, passage) pair, by ``_key(query, passage)``; the pairs this
    teacher already scored into ``cache`` are read from it and the others scored and appended batch by batch (an
    interrupted scoring resumes). Returns the scores and how many pairs were scored now."""
    from ragtune.embed import checkpoint_hash

    directory = check_teacher(teacher)
    # A teacher trained again in place, or read with another max_length, scores every pair again.
    identity = f"{checkpoint_hash(str(directory))}:{max_length}"
    scores: dict[str, float] = {}
    text = cache.read_text(encoding="utf-8") if cache.exists() else ""
    if text:
        for line in text.splitlines():
            try:
                row = json.loads(line)
                scores[row["key"]] = float(row["score"])
            except (ValueError, KeyError):
                continue  # a line cut short by a kill: scored again below
    todo: dict[str, tuple[str, str]] = {}
    found: dict[str, float] = {}
    for query, passage in pairs:
        key = _key(query, passage, identity)
        if key in scores:
            found[_key(query, passage)] = scores[key]
        else:
            todo.setdefault(key, (query, passage))
    if not todo:
        return found, 0
    import torch
    from sentence_transformers import CrossEncoder

    try:
        model = CrossEncoder(str(directory), max_length=max_length, device="cuda" if torch.cuda.is_available()
                             else "cpu")
    except OSError as exc:
        raise ConfigError(f"cannot load loss.teacher '{teacher}': {exc}") from exc
    if model.num_labels != 1:
        raise ConfigError(f"loss.teacher '{teacher}' has {model.num_labels} outputs — MarginMSE needs a "
                          "cross-encoder with one relevance score (as 'ragtune train reranker' makes)")
    keys = list(todo)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache, "a", encoding="utf-8") as out:
        if text and not text.endswith("\n"):
            out.write("\n")  # after a line cut short: new rows start on a line of their own
        for start in range(0, len(keys), batch_size):
            batch = keys[start : start + batch_size]
            logits = model.predict([todo[k] for k in batch], batch_size=batch_size, activation_fn=torch.nn.Identity(),
                                   show_progress_bar=False)
            for key, value in zip(batch, np.asarray(logits, dtype=np.float64).reshape(-1), strict=True):
                found[_key(*todo[key])] = float(value)
                out.write(json.dumps({"key": key, "score": round(float(value), 6)}) + "\n")
            out.flush()
            if on_progress is not None:
                on_progress(min(start + batch_size, len(keys)), len(keys))
    return found, len(keys)


def fitted_scale(student: Any, pairs: Sequence[tuple[str, str]], teacher: dict[str, float]) -> float:
    """The factor that puts the teacher's scores on the student's scale: std of the student's similarities over
    the pairs divided by the std of the teacher's scores (1.0 when the teacher's scores do not vary)."""
    queries = sorted({q for q, _ in pairs})
    passages = sorted({p for _, p in pairs})
    q_vec = dict(zip(queries, student.encode(queries, batch_size=64, convert_to_numpy=True,
                                             normalize_embeddings=True, show_progress_bar=False), strict=True))
    p_vec = dict(zip(passages, student.encode(passages, batch_size=64, convert_to_numpy=True,
                                              normalize_embeddings=True, show_progress_bar=False), strict=True))
    own = np.array([float(q_vec[q] @ p_vec[p]) for q, p in pairs])
    theirs = np.array([teacher[_key(q, p)] for q, p in pairs])
    spread = float(theirs.std())
    return float(own.std()) / spread if spread > 1e-9 else 1.0


def margin_labels(
    rows: dict[str, list[str]], teacher: str, run_dir: Path, student: Any, *, scale: float = 0.0,
    max_length: int = 256, batch_size: int = 32, on_progress: ProgressFn | None = None,
) -> Margins:
    """For each (anchor, positive, negative) row: scale x (teacher(anchor, positive) - teacher(anchor, negative))."""
    anchors, positives, negatives = rows["anchor"], rows["positive"], rows["negative"]
    pairs = list(dict.fromkeys([*zip(anchors, positives, strict=True), *zip(anchors, negatives, strict=True)]))
    scores, scored = teacher_scores(teacher, pairs, run_dir / TEACHER_SCORES, max_length=max_length,
                                    batch_size=batch_size, on_progress=on_progress)
    factor = scale if scale > 0 else fitted_scale(student, pairs, scores)
    labels = [factor * (scores[_key(a, p)] - scores[_key(a, n)])
              for a, p, n in zip(anchors, positives, negatives, strict=True)]
    log.info("teacher margins: %d rows, %d pairs (%d scored now), scale %.4f", len(labels), len(pairs), scored,
             factor)
    return Margins(labels, factor, scored, len(pairs))
