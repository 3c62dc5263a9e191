"""PII detection and redaction: checksums, EN + ZH formats, overlaps, and recall/precision on the fixture set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragtune.errors import ConfigError
from ragtune.guard.pii import (
    PII_KINDS,
    bsn_valid,
    cn_id_valid,
    find_pii,
    iban_valid,
    luhn_valid,
    pesel_valid,
    pii_kinds,
    redact,
    redact_value,
    steuer_id_valid,
)

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "guard" / "pii_set.jsonl"


@pytest.mark.parametrize(("check", "valid", "invalid"), [
    (luhn_valid, "4111111111111111", "4111111111111112"),
    (iban_valid, "GB82 WEST 1234 5698 7654 32", "GB83 WEST 1234 5698 7654 32"),
    (iban_valid, "DE89370400440532013000", "DE89370400440532013001"),
    (cn_id_valid, "11010519491231002X", "110105194912310021"),
    (cn_id_valid, "11010519491231002X", "11010519491331002X"),  # month 13
    (pesel_valid, "44051401359", "44051401358"),
    (bsn_valid, "111222333", "111222334"),
    (steuer_id_valid, "86095742719", "86095742718"),
])
def test_checksums(check, valid, invalid):
    assert check(valid)
    assert not check(invalid)


@pytest.mark.parametrize(("text", "kind", "found"), [
    ("mail anna.li@example.com today", "email", "anna.li@example.com"),
    ("请发邮件至zhang_san@corp.example.cn。", "email", "zhang_san@corp.example.cn"),
    ("card 4111 1111 1111 1111 exp 09/28", "card", "4111 1111 1111 1111"),
    ("Amex 3782-822463-10005 on file", "card", "3782-822463-10005"),
    ("IBAN DE89 3704 0044 0532 0130 00 for rent", "iban", "DE89 3704 0044 0532 0130 00"),
    ("身份证号：11010519491231002X", "cn_id", "11010519491231002X"),
    ("DNI 12345678Z verified", "eu_id", "12345678Z"),
    ("NIE X1234567L verified", "eu_id", "X1234567L"),
    ("codice fiscale RSSMRA85T10A562S", "eu_id", "RSSMRA85T10A562S"),
    ("PESEL 44051401359", "eu_id", "44051401359"),
    ("BSN: 111222333", "eu_id", "111222333"),
    ("我的手机号是13812345678，有事打。", "phone", "13812345678"),
    ("call (415) 555-2671 now", "phone", "(415) 555-2671"),
    ("+44 20 7946 0958 is the office", "phone", "+44 20 7946 0958"),
    ("ship to 221B Baker Street, London please", "address", "221B Baker Street, London"),
    ("收货地址：北京市朝阳区建国路88号3栋1201室", "address", "北京市朝阳区建国路88号3栋1201室"),
    ("我住在上海市浦东新区世纪大道100号，欢迎来玩。", "address", "上海市浦东新区世纪大道100号"),
])
def test_finds_each_kind(text, kind, found):
    matches = find_pii(text)
    assert [(m.kind, m.text) for m in matches] == [(kind, found)]
    m = matches[0]
    assert text[m.start : m.end] == m.text


@pytest.mark.parametrize("text", [
    "Order #48213377 shipped on 2026-03-14.",
    "Upgrade to version 2.13.0 before Monday.",
    "The card 4111 1111 1111 1112 was declined.",  # Luhn fails
    "IBAN DE89370400440532013001 bounced.",  # mod 97 fails
    "ID 110105194912310021 is not valid.",  # check character fails
    "会议改到2026-03-10上午9:30，工单INC1234567已关闭。",
    "A bare 111222333 is not a BSN without the word.",
    "The invoice total was $1,299.00, pay grade 7.",
])
def test_look_alikes_are_not_pii(text):
    assert find_pii(text) == []


def test_redact_replaces_spans_and_keeps_the_rest():
    text = "Write to anna@example.com or call 13812345678; IBAN GB82WEST12345698765432."
    assert redact(text) == "Write to [EMAIL] or call [PHONE]; IBAN [IBAN]."
    assert redact(text, ["email"]) == "Write to [EMAIL] or call 13812345678; IBAN GB82WEST12345698765432."
    assert redact(text, mask=lambda m: "*" * len(m.text)).count("*") == len("anna@example.com") + 11 + 22
    assert redact("nothing here") == "nothing here"
    assert pii_kinds(text) == ["email", "phone", "iban"]


def test_checked_numbers_win_overlaps():
    # 18 digits that are a valid resident ID also look like a long phone number: the checksummed kind wins.
    assert [m.kind for m in find_pii("tel/ID 11010519491231002X")] == ["cn_id"]


def test_redact_value_walks_json():
    row = {"question": "my mail is a@example.com", "contexts": ["call +1 415-555-2671", 3], "rating": "up"}
    assert redact_value(row) == {"question": "my mail is [EMAIL]", "contexts": ["call [PHONE]", 3], "rating": "up"}


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown PII kind"):
        find_pii("x", ["passport"])


def test_fixture_set_recall_and_precision():
    """The committed synthetic EN + ZH set (bench/guard_pii_data.py --seed 2): >= 300 items, recall >= 0.95."""
    items = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    assert len(items) >= 300 and {i["lang"] for i in items} == {"en", "zh"}
    assert {s["kind"] for i in items for s in i["spans"]} == set(PII_KINDS)
    gold = found = predicted = correct = 0
    for item in items:
        matches = find_pii(item["text"])
        spans = {(s["kind"], s["start"], s["end"]) for s in item["spans"]}
        gold += len(spans)
        got = {(m.kind, m.start, m.end) for m in matches}
        found += len(spans & got)
        predicted += len(got)
        correct += len(spans & got)
    assert found / gold >= 0.95
    assert correct / predicted >= 0.95

