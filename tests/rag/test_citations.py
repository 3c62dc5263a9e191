"""Citation parsing and verification."""

from __future__ import annotations

import pytest

from ragtune.rag.citations import parse_numbers, split_cited_sentences, support, verify_citations
from ragtune.types import ChunkMeta, Hit

pytestmark = pytest.mark.unit


def _hit(i: int, text: str) -> Hit:
    return Hit(chunk_id=f"c{i}", document_id=f"d{i}", source=f"/docs/doc{i}.md", text=text, score=1.0,
               meta=ChunkMeta(source_type="md", section_title=f"S{i}"))


SOURCES = [
    _hit(1, "API keys must be rotated every 90 days from the admin console."),
    _hit(2, "Enterprise customers have a refund window of 45 days from the invoice date."),
    _hit(3, "Hotel costs are reimbursed up to 180 EUR per night in Europe."),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Keys rotate [1].", [[1]]),
        ("Keys rotate [1][2].", [[1, 2]]),
        ("Keys rotate [1, 3].", [[1, 3]]),
        ("Keys rotate [1，3].", [[1, 3]]),
        ("Keys rotate [1-3].", [[1, 2, 3]]),
        ("年假二十天【1】。", [[1]]),
        ("Keys rotate [^2].", [[2]]),
        ("Keys rotate [Source 2].", [[2]]),
        ("Keys rotate. [1] Refunds last. [2]", [[1], [2]]),
        ("No citation here.", [[]]),
        ("Costs 2.5 EUR [3]. Done.", [[3], []]),
    ],
)
def test_markers_are_parsed_in_every_common_form(text, expected):
    assert [s.numbers for s in split_cited_sentences(text)] == expected


def test_parse_numbers_dedupes_and_bounds_ranges():
    assert parse_numbers("1, 1, 2") == [1, 2]
    assert parse_numbers("1-500") == [1, 500]  # an absurd range is not expanded


def test_supported_citations_are_kept_and_renumbered_consistently():
    result = verify_citations("API keys must be rotated every 90 days [1]. Refunds: 45 days [2].", SOURCES)
    assert [c.number for c in result.citations] == [1, 2]
    assert result.citations[0].chunk_id == "c1" and result.citations[0].source == "/docs/doc1.md"
    assert result.removed == []
    assert result.text == "API keys must be rotated every 90 days [1]. Refunds: 45 days [2]."


def test_out_of_range_citations_are_removed_and_reported():
    result = verify_citations("API keys must be rotated every 90 days [7].", SOURCES, attribute_uncited=False)
    assert result.citations == []
    assert result.removed[0].number == 7 and "no source [7]" in result.removed[0].reason
    assert "[7]" not in result.text


def test_a_citation_of_an_unsupported_claim_is_removed():
    result = verify_citations("Employees get a free car every year [1].", SOURCES, attribute_uncited=False)
    assert result.citations == [] and "does not support" in result.removed[0].reason


def test_a_wrong_number_makes_a_citation_unsupported():
    result = verify_citations("API keys must be rotated every 30 days [1].", SOURCES, attribute_uncited=False)
    assert result.citations == [] and result.removed[0].number == 1


def test_mixed_valid_and_invalid_citations_in_one_marker():
    result = verify_citations("Hotel costs are reimbursed up to 180 EUR per night [1, 3].", SOURCES)
    assert [c.number for c in result.citations] == [3]
    assert [r.number for r in result.removed] == [1]
    assert result.text == "Hotel costs are reimbursed up to 180 EUR per night [3]."


def test_uncited_but_supported_sentences_are_attributed_and_marked():
    result = verify_citations("Enterprise customers have a refund window of 45 days.", SOURCES)
    assert [(c.number, c.added) for c in result.citations] == [(2, True)]
    assert result.text.endswith("[2].")
    off = verify_citations("Enterprise customers have a refund window of 45 days.", SOURCES, attribute_uncited=False)
    assert off.citations == []


def test_repeated_sentences_are_dropped():
    result = verify_citations("Keys rotate every 90 days [1]. Keys rotate every 90 days [1].", SOURCES)
    assert result.text == "Keys rotate every 90 days [1]."


def test_chinese_support_uses_word_segmentation():
    zh = [_hit(1, "全职员工每年享有二十天带薪年假。")]
    result = verify_citations("全职员工每年享有二十天带薪年假【1】。", zh)
    assert [c.number for c in result.citations] == [1] and result.text == "全职员工每年享有二十天带薪年假 [1]。"
    assert support("员工每年享有带薪年假", zh[0].text) == 1.0
    assert support("公司提供免费午餐", zh[0].text) < 0.5
