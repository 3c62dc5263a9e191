"""Citation parsing and verification."""

from __future__ import annotations

import pytest

from ragtune.rag.citations import join_sentences, parse_numbers, split_cited_sentences, support, with_markers
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


def test_markers_go_before_the_closing_punctuation():
    assert with_markers("Keys rotate every 90 days.", "[1]") == "Keys rotate every 90 days [1]."
    assert with_markers("年假二十天。", "[1]") == "年假二十天 [1]。"
    assert with_markers("Keys rotate", "") == "Keys rotate"


def test_sentences_join_with_a_space_except_after_chinese():
    assert join_sentences(["A [1].", "B [2]."]) == "A [1]. B [2]."
    assert join_sentences(["年假二十天 [1]。", "病假十五天 [1]。"]) == "年假二十天 [1]。病假十五天 [1]。"


def test_lexical_support_uses_word_segmentation_for_chinese():
    text = "全职员工每年享有二十天带薪年假。"
    assert support("员工每年享有带薪年假", text) == 1.0
    assert support("公司提供免费午餐", text) < 0.5
    assert support("API keys rotate every 30 days", SOURCES[0].text) == 0.0  # a number the source lacks
