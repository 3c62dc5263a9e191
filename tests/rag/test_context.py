"""Context assembly: de-duplication and packing within a token budget."""

from __future__ import annotations

import pytest

from ragtune.rag.context import SOURCE_OVERHEAD, dedupe, pack
from ragtune.types import ChunkMeta, Hit

pytestmark = pytest.mark.unit


def words(text: str) -> int:
    return len(text.split())


def _hit(i: int, text: str) -> Hit:
    return Hit(chunk_id=f"c{i}", document_id="d", source="s", text=text, score=1.0 / i, meta=ChunkMeta())


def test_duplicates_and_near_duplicates_are_dropped_keeping_the_best():
    hits = [_hit(1, "Keys rotate every 90 days."), _hit(2, "Keys rotate every 90 days."),
            _hit(3, "keys ROTATE every 90 days!"), _hit(4, "Refunds take 45 days.")]
    assert [h.chunk_id for h in dedupe(hits)] == ["c1", "c4"]


def test_packing_respects_the_budget_and_order():
    hits = [_hit(i, " ".join(["word"] * 20) + ".") for i in range(1, 6)]
    packed = pack(hits, budget=3 * (20 + SOURCE_OVERHEAD), count_tokens=words)
    assert [h.chunk_id for h in packed] == ["c1", "c2", "c3"]
    assert sum(words(h.text) + SOURCE_OVERHEAD for h in packed) <= 3 * (20 + SOURCE_OVERHEAD)


def test_a_chunk_that_does_not_fit_is_cut_at_a_sentence_end_never_mid_sentence():
    text = "First sentence has five words. Second sentence has five words. Third sentence has five words."
    packed = pack([_hit(1, text)], budget=11 + SOURCE_OVERHEAD, count_tokens=words, min_tokens=1)
    assert packed[0].text == "First sentence has five words. Second sentence has five words."
    assert pack([_hit(1, text)], budget=4 + SOURCE_OVERHEAD, count_tokens=words, min_tokens=1) == []


def test_a_big_chunk_is_skipped_for_smaller_ones_that_fit():
    big = _hit(1, " ".join(["long"] * 100))  # no sentence end to cut at
    small = _hit(2, "Short fact here.")
    assert [h.chunk_id for h in pack([big, small], budget=30, count_tokens=words)] == ["c2"]


def test_max_sources_caps_the_count():
    hits = [_hit(i, f"Fact {i}.") for i in range(1, 10)]
    assert len(pack(hits, budget=1000, count_tokens=words, max_sources=3)) == 3


def test_a_later_table_piece_is_shown_and_budgeted_with_its_header():
    from ragtune.rag.prompts import format_sources

    header = "| Warehouse | City | Forklifts |\n| --- | --- | --- |"
    piece = Hit(chunk_id="c1", document_id="d", source="s", text="| South depot | Valletta | 4 |", score=1.0,
                meta=ChunkMeta(table_header=header))
    plain = _hit(2, "Depots open at eight.")
    shown = format_sources([piece, plain])
    assert shown == f"[1] {header}\n| South depot | Valletta | 4 |\n\n[2] Depots open at eight."
    row_cost = words(piece.text) + SOURCE_OVERHEAD
    assert pack([piece], budget=row_cost, count_tokens=words) == []  # the header has to fit too
    assert pack([piece], budget=row_cost + words(header), count_tokens=words) == [piece]
