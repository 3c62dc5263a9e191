"""Numbered sources: chunks of one document under one number with their sections; what the judge reads."""

from __future__ import annotations

import pytest
from answer_helpers import hit

from ragtune.rag.sources import group_sources, is_heading_only, passage_with_headings

pytestmark = pytest.mark.unit


def test_chunks_of_one_document_share_one_number_in_document_order():
    hits = [
        hit("refunds.md", "Enterprise customers have 45 days.", chunk=2, heading_path=("Refunds", "Enterprise")),
        hit("travel.txt", "Hotels are reimbursed up to 180 EUR."),
        hit("refunds.md", "Starter customers have 14 days.", chunk=1, heading_path=("Refunds", "Standard")),
    ]
    sources = group_sources(hits)
    assert [(s.number, s.best.source) for s in sources] == [(1, "/docs/refunds.md"), (2, "/docs/travel.txt")]
    first = sources[0]
    assert first.sections == ["Refunds › Standard", "Refunds › Enterprise"]
    assert first.hit.text == "Starter customers have 14 days.\n\nEnterprise customers have 45 days."
    assert first.hit.chunk_id == "refunds.md#2"  # the best passage names the source
    document = first.document(snippet="Enterprise customers have 45 days.", cited=True)
    assert document.chunk_ids == ["refunds.md#1", "refunds.md#2"] and document.cited and document.number == 1
    assert [s.number for s in group_sources(hits, max_sources=1)] == [1]


def test_the_judge_reads_each_passage_under_its_headings():
    passage = hit("refunds.md", "Enterprise\n\nEnterprise customers have 45 days.", heading_path=("Refunds",
                                                                                                 "Enterprise"))
    assert passage_with_headings(passage) == "# Refunds\n## Enterprise\n\nEnterprise customers have 45 days."


def test_title_only_chunks_are_recognised():
    assert is_heading_only(hit("p.md", "Projects", heading_path=("Projects",)))
    assert not is_heading_only(hit("p.md", "Projects\n\nNimbus has 12 engineers.", heading_path=("Projects",)))
