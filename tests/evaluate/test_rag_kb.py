"""Evaluation on a real knowledge base with the bundled model: answering with the KB's pipeline and resuming
from the answer cache, eval sets built by the bundled SmolLM2 (round trip, grounded references, unanswerable
probes, a content hash, rated answers as references), and the eval set scored end to end."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragtune.evaluate import evaluate_rag
from ragtune.evaluate.evalset import build_eval_set, feedback_rows, unanswerable_probes, write_eval_set
from ragtune.evaluate.samples import file_sha256
from ragtune.feedback import FeedbackStore
from ragtune.kb import KnowledgeBase
from ragtune.rag.claims import default_judge
from ragtune.types import Answer, Citation

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUESTIONS = [
    {"id": "refund", "user_input": "What is the refund window for enterprise plans?", "reference": "45 days",
     "reference_context_ids": ["refunds.md"]},
    {"id": "portal", "user_input": "Which portal do employees use to book flights?", "reference": "Voyager",
     "reference_context_ids": ["travel.txt"]},
    {"id": "ceo", "user_input": "What is the name of the chief executive's dog?", "answerable": False},
]
METRICS = ["context_recall@5", "context_recall@1", "faithfulness", "answer_correctness", "refusal_accuracy",
           "false_refusal_rate"]


class FailingLLM:
    """Stands in for the model on a resumed run: any call means the cache was not used."""

    name = "must-not-be-called"
    context_window = 8192

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, *args: object, **kwargs: object) -> Iterator[str]:
        raise AssertionError("the model was asked again: answers were not taken from the cache")

    chat = stream


@pytest.fixture(scope="module")
def handbook(tmp_path_factory, embedder) -> Iterator[KnowledgeBase]:
    kb = KnowledgeBase.open(tmp_path_factory.mktemp("eval") / "kb", create=True, embedder=embedder)
    assert kb.ingest(EXAMPLES).ok
    yield kb
    kb.close()


def test_answers_with_the_pipeline_then_resumes_from_the_cache(handbook: KnowledgeBase, tmp_path: Path) -> None:
    handbook.llm = None  # the bundled SmolLM2
    cache = tmp_path / "cache"
    first = evaluate_rag(kb=handbook, questions=QUESTIONS, metrics=METRICS, cache=cache)
    items = {item["id"]: item for item in first["items"]}
    assert items["refund"]["context_recall@5"] == 1.0 and items["portal"]["context_recall@5"] == 1.0
    assert items["refund"]["retrieved_context_sources"][0].endswith(".md") or items["refund"]["refused"]
    assert items["ceo"]["answerable"] is False and "excluded" in items["ceo"]
    assert {"retrieve", "total"} <= set(first["latency_ms"])
    assert first["config"]["model"] == "SmolLM2-135M-Instruct" and first["config"]["kb_fingerprint"]
    for item in first["items"]:
        assert all(math.isfinite(item[m]) for m in METRICS)
    assert (cache / "answers.sqlite").is_file()

    handbook.llm = FailingLLM()
    try:
        again = evaluate_rag(kb=handbook, questions=QUESTIONS, metrics=METRICS, cache=cache)
    finally:
        handbook.llm = None
    assert again["items"] == first["items"] and again["metrics"] == first["metrics"]


@pytest.fixture(scope="module")
def eval_set(handbook: KnowledgeBase, tmp_path_factory) -> tuple[Path, list[dict], dict]:
    handbook.llm = None
    rows, report = build_eval_set(handbook, size=6, unanswerable=0.34)
    out = tmp_path_factory.mktemp("set") / "eval.jsonl"
    meta = write_eval_set(rows, out, report=report, kb=handbook)
    return out, rows, meta


def test_eval_set_with_the_bundled_model(handbook: KnowledgeBase, eval_set) -> None:
    out, rows, meta = eval_set
    assert meta["sha256"] == file_sha256(out) and meta["rows"] == len(rows) == len(out.read_text().splitlines())
    assert json.loads(out.with_name("eval.meta.json").read_text())["model"] == "SmolLM2-135M-Instruct"
    answerable = [r for r in rows if r["answerable"]]
    probes = [r for r in rows if not r["answerable"]]
    assert answerable and len(probes) == 2
    judge = default_judge()
    for row in answerable:
        chunk = handbook.store.document_chunks(row["document_id"])
        texts = {h.chunk_id: h.text for h in chunk}
        assert row["reference_context_ids"][0] in texts and row["reference_contexts"][0] == \
            texts[row["reference_context_ids"][0]]
        # Round trip: retrieval finds the gold chunk for the question.
        hits = handbook.retrieve(row["user_input"], 5, rerank=False).hits
        assert row["reference_context_ids"][0] in [h.chunk_id for h in hits]
        if row["reference_kind"] == "extractive":
            assert row["reference"] in " ".join(row["reference_contexts"][0].split())
        else:
            assert judge.check([f"{row['user_input']} {row['reference']}"], row["reference_contexts"])[0].supported
    for probe in probes:
        assert probe["reference"] == "Insufficient information" and probe["swapped"]["to"] in probe["user_input"]
        assert not handbook.store.sparse_search(probe["swapped"]["to"], 1)  # no chunk mentions it
    assert len({r["user_input"] for r in rows}) == len(rows)
    # Frozen: the same KB, model and seed give the same set again (the LLM replies come from the cache).
    again, _ = build_eval_set(handbook, size=6, unanswerable=0.34)
    assert again == rows


def test_the_eval_set_scores_end_to_end(handbook: KnowledgeBase, eval_set, tmp_path: Path) -> None:
    out, rows, meta = eval_set
    handbook.llm = None
    result = evaluate_rag(kb=handbook, questions=out, metrics=["context_recall", "refusal_accuracy",
                                                                "false_refusal_rate"], cache=tmp_path)
    assert result["config"]["data_sha256"] == meta["sha256"]
    assert result["counts"]["refusal_accuracy"] == 2
    assert result["counts"]["false_refusal_rate"] == len(rows) - 2


def test_probes_replace_names_first(handbook: KnowledgeBase) -> None:
    probes = unanswerable_probes(handbook, ["Who approves refunds above 10,000 EUR for Marta Kowalski?",
                                            "全职员工每年有多少天带薪年假？"], 2)
    swapped = {p["swapped"]["from"] for p in probes}
    assert "EUR for Marta Kowalski" not in swapped and any("Marta" in s or "EUR" in s for s in swapped)
    assert all(p["answerable"] is False and p["reference_context_ids"] == [] for p in probes)
    assert any(p["reference"] == "信息不足" for p in probes)


def test_rated_answers_become_references(handbook: KnowledgeBase) -> None:
    hit = handbook.search("refund window enterprise", k=1)[0]
    good = Answer(id="a-up", question="What is the enterprise refund window?", grounded=True,
                  answer="Enterprise customers have 45 days [1].", sources=[hit],
                  citations=[Citation(number=1, chunk_id=hit.chunk_id, document_id=hit.document_id, source=hit.source)])
    fixed = Answer(id="a-fix", question="How long do Starter customers have?", grounded=True,
                   answer="30 days [1].", sources=[hit])
    refusal = Answer(id="a-no", question="Who is the CEO?", grounded=False, refused=True,
                     answer="The knowledge base does not contain an answer to this question.")
    with FeedbackStore(handbook.path) as store:
        for answer in (good, fixed, refusal):
            store.record_answer(answer)
        store.add("a-up", "up")
        store.add("a-fix", "down", corrected_answer="14 days")
        store.add("a-no", "up")
    rows = {r["id"]: r for r in feedback_rows(handbook)}
    assert rows["f-a-up"]["reference"] == "Enterprise customers have 45 days."
    assert rows["f-a-up"]["reference_context_ids"] == [hit.chunk_id]
    assert rows["f-a-fix"]["reference"] == "14 days" and "reference_context_ids" not in rows["f-a-fix"]
    assert rows["f-a-no"]["answerable"] is False
    built, report = build_eval_set(handbook, size=3, unanswerable=0.0, from_feedback=True)
    assert report.from_feedback == 3 and {r["origin"] for r in built} == {"feedback-up", "feedback-correction",
                                                                          "feedback-refusal"}
