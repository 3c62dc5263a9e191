"""Numbered sources: chunks of one document under one number with their sections; what the judge reads."""

from __future__ import annotations

import pytest
from answer_helpers import hit

from ragtune.rag.sources import Source, group_sources, is_heading_only, newest_first, passage_with_headings

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


def test_newest_first_renumbers_dated_sources_and_keeps_undated_ones_after():
    old, new, undated = hit("a.txt", "old"), hit("b.txt", "new"), hit("c.md", "undated")
    old.meta.created_at, new.meta.created_at = "2026-11-02", "2026-11-05T15:00"
    ordered = newest_first([Source(1, [old]), Source(2, [undated]), Source(3, [new])])
    assert [(s.number, s.best.text) for s in ordered] == [(1, "new"), (2, "old"), (3, "undated")]
    same = [Source(1, [old]), Source(2, [undated])]
    assert newest_first(same) == same  # one date: nothing to order by
