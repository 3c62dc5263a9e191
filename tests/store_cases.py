"""Cases every filter compiler is checked against: varied metadata rows, filters covering the whole language
(compared with ``filters.matches``), and injection attempts (shared by the SQLite, Postgres and Milvus tests)."""

from __future__ import annotations

import random
from typing import Any


def make_rows() -> list[dict[str, Any]]:
    """~50 varied metadata dicts: missing keys, nulls, empty lists, booleans, non-ASCII, odd types."""
    rng = random.Random(7)
    rows = []
    for i in range(50):
        row: dict[str, Any] = {
            "source": f"doc{i % 7}.pdf",
            "source_type": rng.choice(["pdf", "pdf", "docx", "md", "html", None]),
            "document_id": f"doc{i % 7}",
            "chunk_index": i,
            "page_number": rng.choice([None, 1, 2, 3, 3, 5, 10]),
            "author": rng.choice([None, "Ann", "Bob", "ann", "Zoë", "Ann Lee", 7]),
            "tags": rng.choice([[], ["x"], ["x", "y"], ["legal"], ["y", "legal"], [1, "x"], None]),
            "heading_path": rng.choice([[], ["Intro"], ["Intro", "Scope"], ["Terms", "Scope", "Fees"]]),
            "is_ocr": rng.random() < 0.3,
            "word_count": rng.choice([0, 12, 12.5, 99, 150, 400]),
            "created_at": rng.choice([None, "2023-05-01", "2024-01-01", "2024-07-15T10:00:00", "2025-02-02"]),
            "section_title": rng.choice([None, "Scope of work", "Introduction", "SCOPE", ""]),
            "language": rng.choice(["en", "en", "zh", "de", None]),
        }
        # Some rows lack keys entirely, which must behave like null.
        for key in rng.sample(sorted(row), rng.choice([0, 0, 1, 3])):
            del row[key]
        rows.append(row)
    return rows


ROWS = make_rows()


PARITY_FILTERS: list[dict[str, Any]] = [
    {},
    {"source_type": "pdf"},
    {"source_type": {"$eq": "pdf"}},
    {"source_type": {"$ne": "pdf"}},
    {"source_type": None},
    {"source_type": {"$ne": None}},
    {"source_type": {"$in": ["pdf", "md"]}},
    {"source_type": {"$nin": ["pdf", "md"]}},
    {"source_type": {"$in": ["pdf", None]}},
    {"source_type": {"$nin": ["pdf", None]}},
    {"source_type": {"$in": []}},
    {"source_type": {"$nin": []}},
    {"page_number": 3},
    {"page_number": 3.0},
    {"page_number": {"$gte": 3}},
    {"page_number": {"$gt": 2, "$lte": 5}},
    {"page_number": {"$lt": 3}},
    {"page_number": {"$ne": 3}},
    {"page_number": {"$in": [1, 5, 10.0]}},
    {"page_number": {"$nin": [1, None]}},
    {"page_number": {"$exists": True}},
    {"page_number": {"$exists": False}},
    {"author": "Ann"},
    {"author": {"$ne": "Ann"}},
    {"author": {"$exists": False}},
    {"author": {"$gte": "B"}},
    {"author": {"$lt": "a"}},
    {"author": {"$contains": "nn"}},
    {"author": {"$in": ["Ann", "Bob", "Zoë"]}},
    {"author": {"$nin": ["Ann"]}},
    {"tags": "x"},
    {"tags": {"$eq": "legal"}},
    {"tags": {"$contains": "legal"}},
    {"tags": {"$ne": "x"}},
    {"tags": {"$in": ["y", "legal"]}},
    {"tags": {"$in": [1, "legal"]}},
    {"tags": {"$nin": ["x", "y"]}},
    {"tags": {"$in": ["legal", None]}},
    {"tags": None},
    {"tags": {"$exists": True}},
    {"tags": 1},
    {"heading_path": "Scope"},
    {"heading_path": {"$contains": "Intro", "$ne": "Scope"}},
    {"is_ocr": True},
    {"is_ocr": False},
    {"is_ocr": {"$ne": True}},
    {"is_ocr": {"$in": [True]}},
    {"is_ocr": {"$nin": [False]}},
    {"word_count": {"$gt": 100}},
    {"word_count": {"$lte": 12.5}},
    {"word_count": 12.5},
    {"word_count": {"$in": [0, 12]}},
    {"created_at": {"$gte": "2024-01-01", "$lt": "2025-01-01"}},
    {"created_at": {"$lte": "2024-07-15"}},
    {"section_title": {"$contains": "Scope"}},
    {"section_title": {"$contains": ""}},
    {"section_title": ""},
    {"language": {"$nin": ["en"]}},
    {"$or": [{"source_type": "pdf"}, {"tags": "legal"}]},
    {"$and": [{"page_number": {"$gte": 2}}, {"is_ocr": False}]},
    {"$not": {"source_type": "pdf"}},
    {"$not": {"$or": [{"author": None}, {"page_number": {"$lt": 3}}]}},
    {"$not": {"$not": {"tags": {"$contains": "x"}}}},
    {
        "$or": [
            {"$and": [{"source_type": "pdf"}, {"$not": {"tags": "x"}}]},
            {"language": {"$in": ["zh", None]}},
        ],
        "is_ocr": False,
    },
    {"source_type": "pdf", "page_number": {"$gte": 2}, "$or": [{"tags": "x"}, {"author": {"$in": ["Ann", "Bob"]}}]},
    {"$or": [{"$not": {}}, {"author": "Bob"}]},
    {"$and": [{}, {"language": "de"}]},
    {"source_type": "pdf", "$not": {}},
]


INJECTION_VALUES = [
    {"author": "x' OR 1=1 --"},
    {"source_type": "'); DROP TABLE chunks; --"},
    {"source_type": {"$in": ["pdf') OR ('1'='1", 'x" OR "1"="1']}},
    {"tags": {"$contains": "x'); DROP TABLE chunks; --"}},
    {"section_title": {"$contains": "%' OR 1=1 --"}},
    {"created_at": {"$gte": "' OR ''='"}, "page_number": {"$lt": 0}},
]

INJECTION_KEYS = [
    {"source_type = 1 OR 1": "x"},
    {"$or; DROP": [{"source_type": "pdf"}]},
    {"source_type' OR '1'='1": "x"},
    {'author") OR 1=1 --': "x"},
    {"source_type": {"$eq; DROP TABLE chunks": "x"}},
    {"1=1 OR source_type": "pdf"},
]
