"""Evaluation rows with RAGAS's field names: loading, validation, and the refusal and answerability rules."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ragtune.errors import ConfigError
from ragtune.jsonl import read_jsonl
from ragtune.rag.claims import strip_markers
from ragtune.rag.prompts import is_model_refusal

# How references and answers say that the knowledge base lacks the answer, beyond the model refusals that
# ragtune's answer pipeline recognises (LiHua-World writes "Insufficient information").
_NO_ANSWER = re.compile(
    r"insufficient (?:information|context|data)|not enough information|\bunanswerable\b|cannot be answered"
    r"|can't be answered|not (?:in|covered by) the (?:knowledge base|context|sources|documents)"
    r"|^\W*no answer\W*$|信息不足|无法回答|没有答案|无法从.{0,12}(?:得知|回答|确定)",
    re.IGNORECASE,
)
# RAGAS 0.1 column names, still common in exported datasets.
_LEGACY = {"question": "user_input", "answer": "response", "contexts": "retrieved_contexts",
           "ground_truth": "reference"}


class RagSample(BaseModel):
    """One evaluation row. RAGAS's ``SingleTurnSample`` fields, so a RAGAS dataset loads as is, plus
    ``answerable`` and what ragtune records when it generated the answer. Other keys (``id``, ``type``) are
    kept and can group the results."""

    model_config = ConfigDict(extra="allow")

    user_input: str
    retrieved_contexts: list[str] = Field(default_factory=list)
    response: str = ""
    reference: str | None = None
    reference_contexts: list[str] | None = None
    reference_context_ids: list[str] | None = None
    retrieved_context_ids: list[str] | None = None
    #: False: the knowledge base does not hold the answer, and refusing is the right response.
    answerable: bool | None = None
    #: Set by ragtune when its pipeline refused; detected from the response's words otherwise.
    refused: bool | None = None
    #: The source (file path or URI) of each retrieved context, so reference ids may name files.
    retrieved_context_sources: list[str] | None = None
    #: A deeper retrieval ranking than the contexts given to the model, for ``context_recall@k``.
    ranked_contexts: list[str] | None = None
    ranked_context_ids: list[str] | None = None
    ranked_context_sources: list[str] | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)

    @field_validator("reference_context_ids", "retrieved_context_ids", "ranked_context_ids", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: Any) -> Any:
        # RAGAS compares ids as strings, so 3 and "3" name the same context.
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        return value

    @field_validator("retrieved_contexts", mode="before")
    @classmethod
    def _no_null_contexts(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("response", mode="before")
    @classmethod
    def _no_null_response(cls, value: Any) -> Any:
        return "" if value is None else value

    def extra(self, name: str) -> Any:
        """A field the row carries beyond the known ones (e.g. ``id`` or ``type``), or None."""
        return (self.model_extra or {}).get(name)


def is_refusal(text: str) -> bool:
    """True when a response declines to answer: empty, a model refusal, or a 'no information' phrase."""
    plain = strip_markers(text)
    return not any(ch.isalnum() for ch in plain) or is_model_refusal(plain) or bool(_NO_ANSWER.search(plain))


def is_unanswerable_reference(reference: str) -> bool:
    """True when a reference answer says the knowledge base lacks the answer ("Insufficient information")."""
    return bool(_NO_ANSWER.search(strip_markers(reference)))


def answerability(sample: RagSample) -> bool | None:
    """``answerable`` when given; else decided by the reference (one saying the KB lacks the answer marks
    an unanswerable row); None when neither tells."""
    if sample.answerable is not None:
        return sample.answerable
    if sample.reference is not None and sample.reference.strip():
        return not is_unanswerable_reference(sample.reference)
    return None


def was_refused(sample: RagSample) -> bool:
    """The pipeline's own record when there is one, otherwise the response's words (an empty one counts)."""
    return sample.refused if sample.refused is not None else is_refusal(sample.response)


def sample_id(sample: RagSample, index: int) -> str:
    """The row's ``id`` when it has one, else its position: what pairs items of two runs."""
    value = sample.extra("id")
    return str(value) if value is not None else str(index)


def load_samples(data: str | Path | Iterable[RagSample | Mapping[str, Any]]) -> list[RagSample]:
    """Rows from a JSONL or JSON file (a list of objects, or RAGAS's ``{"samples": [...]}``), or from Python
    objects. RAGAS 0.1 names (question, answer, contexts, ground_truth) are accepted too."""
    if isinstance(data, (str, Path)):
        return [_sample(row, f"{data} row {i + 1}") for i, row in enumerate(read_rows(Path(data)))]
    return [row if isinstance(row, RagSample) else _sample(row, f"row {i + 1}") for i, row in enumerate(data)]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a .jsonl file (one a line) or a .json file (a list, or ``{"samples": [...]}``)."""
    if path.suffix.lower() != ".json":
        return [row for _, row in read_jsonl(path, what="eval data", missing="give a JSONL file with one row per line")]
    if not path.is_file():
        raise ConfigError(f"{path}: no such file — give a JSONL file with one row per line")
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    rows = loaded.get("samples", []) if isinstance(loaded, dict) else loaded
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ConfigError(f"{path}: expected a list of row objects or {{\"samples\": [...]}}")
    return rows


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes: records which frozen eval set a run measured."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sample(row: Mapping[str, Any], where: str) -> RagSample:
    if not isinstance(row, Mapping):
        raise ConfigError(f"{where}: expected an object with 'user_input', got {type(row).__name__}")
    row = dict(row)
    if "user_input" not in row and "question" in row:
        for old, new in _LEGACY.items():
            if old in row and new not in row:
                row[new] = row.pop(old)
        if "reference" not in row and isinstance(row.get("ground_truths"), list):
            row["reference"] = " ".join(str(x) for x in row.pop("ground_truths"))
    try:
        sample = RagSample(**row)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{where}: {problems} — rows use RAGAS's field names (user_input, retrieved_contexts, "
                          "response, reference, reference_contexts, reference_context_ids, answerable)") from None
    if not sample.user_input.strip():
        raise ConfigError(f"{where}: user_input is empty — every row needs its question")
    return sample
