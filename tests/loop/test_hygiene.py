"""Data hygiene of the loop's datasets: the leakage guard (normalised hash and near duplicates, EN + ZH), repeats,
and personal-data redaction through guard/pii.py — recall and precision on the trust set (EN + ZH)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.loop.hygiene import LeakageGuard, clean_rows, normalise_question, question_hash

pytestmark = pytest.mark.unit

PII_SET = Path(__file__).resolve().parents[1] / "fixtures" / "guard" / "pii_set.jsonl"
EVAL = ["How long is the refund window for enterprise customers?", "病假每年最多几天？",
        "Who approves refunds above 10,000 EUR?"]


def test_normalised_questions_ignore_case_width_spacing_and_end_punctuation() -> None:
    assert normalise_question("  How long is the REFUND window?? ") == "how long is the refund window"
    assert normalise_question("病假每年最多几天？") == normalise_question("病假每年最多几天?")
    assert normalise_question("ＡＢＣ １２３") == "abc 123"  # full-width forms
    assert question_hash("What is X?") == question_hash("what is x")
    assert question_hash("What is X?") != question_hash("What is Y?")


@pytest.mark.parametrize(("question", "expected"), [
    ("How long is the refund window for enterprise customers?", "exact"),
    ("how long is the refund window for enterprise customers", "exact"),
    ("How long is the refund window for enterprise customer?", "near"),     # one letter
    ("How long is the refund windw for enterprise customers?", "near"),     # a typo
    ("病假每年最多几天", "exact"),
    ("病假每年最多有几天？", "near"),
    ("Who approves refunds above 10,000 EUR", "exact"),
    ("How long is the refund window for starter plans?", None),             # another question
    ("年假有多少天？", None),
])
def test_leakage_guard(question: str, expected: str | None) -> None:
    assert LeakageGuard(EVAL, threshold=0.9).check(question) == expected


def test_clean_rows_drops_eval_questions_and_repeats_and_counts_them() -> None:
    rows = [
        {"query": "How long is the refund window for enterprise customers?", "positive": "45 days"},  # leaked
        {"query": "How long is the refund window for enterprise customer", "positive": "45 days"},    # near
        {"query": "What is the travel per diem?", "positive": "60 EUR a day"},
        {"query": "what is the travel per diem", "positive": "60 EUR a day"},                         # repeat
        {"query": "What is the travel per diem?", "positive": "a different passage"},                 # kept
    ]
    kept, report = clean_rows(rows, question=lambda r: r["query"], key=lambda r: f"{r['query']}\n{r['positive']}",
                              guard=LeakageGuard(EVAL))
    assert [r["positive"] for r in kept] == ["60 EUR a day", "a different passage"]
    assert (report.rows_in, report.rows_out, report.leaked_exact, report.leaked_near, report.duplicates) == \
        (5, 2, 1, 1, 1)


def test_personal_data_is_redacted_in_every_field_and_counted() -> None:
    rows = [{"question": "Send it to anna@corp.example or call +44 20 7946 0958",
             "messages": [{"role": "user", "content": "我的身份证号是11010519491231002X"}],
             "contexts": ["IBAN GB82 WEST 1234 5698 7654 32"], "rating": "up", "feedback_id": 3}]
    kept, report = clean_rows(rows, question=lambda r: r["question"], key=lambda r: r["question"], guard=None)
    text = json.dumps(kept, ensure_ascii=False)
    for secret in ("anna@corp.example", "7946", "11010519491231002X", "GB82"):
        assert secret not in text
    assert "[EMAIL]" in text and "[CN_ID]" in text and "[IBAN]" in text
    assert report.pii == {"cn_id": 1, "email": 1, "iban": 1, "phone": 1} and report.pii_rows == 1
    assert kept[0]["feedback_id"] == 3 and kept[0]["rating"] == "up"  # keys and non-strings untouched
    untouched, off = clean_rows(rows, question=lambda r: r["question"], key=lambda r: r["question"], guard=None,
                                redact_pii=False)
    assert untouched == rows and off.pii == {}


def test_redaction_recall_and_precision_on_the_synthetic_en_zh_set() -> None:
    """Every item of the trust helper's synthetic set (318 EN + ZH texts: e-mail, phones, IBAN, cards, Chinese and
    EU ID numbers, addresses, and texts without any) goes through the loop's hygiene as a training row; a gold
    span counts as found when its text is gone from the row, a redaction as correct when it replaced gold text."""
    items = [json.loads(line) for line in PII_SET.read_text(encoding="utf-8").splitlines()]
    assert len(items) >= 300 and {i["lang"] for i in items} == {"en", "zh"}
    rows = [{"query": item["text"], "positive": item["text"], "id": item["id"]} for item in items]
    kept, report = clean_rows(rows, question=lambda r: r["query"], key=lambda r: r["id"], guard=None)
    gold = found = 0
    for item, row in zip(items, kept, strict=True):
        for span in item["spans"]:
            gold += 1
            found += span["text"] not in row["query"]
    redactions = sum(report.pii.values()) // 2  # query and positive hold the same text
    by_item = [sum(row["query"].count(f"[{k.upper()}]") for k in ("email", "phone", "iban", "card", "cn_id", "eu_id",
                                                                    "address")) for row in kept]
    false = sum(max(0, n - len(item["spans"])) for n, item in zip(by_item, items, strict=True))
    recall, precision = found / gold, (redactions - false) / redactions
    assert recall >= 0.95, f"recall {recall:.3f}"
    assert precision >= 0.95, f"precision {precision:.3f}"
    clean = [row for row, item in zip(kept, items, strict=True) if not item["spans"]]
    assert len(clean) >= 50 and sum("[" in row["query"] for row in clean) <= 2  # texts without any stay as they are
