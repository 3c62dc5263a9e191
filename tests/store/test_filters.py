"""The filter language: validation messages, SQLite compilation checked against matches(), injection safety."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from store_cases import INJECTION_KEYS, INJECTION_VALUES, PARITY_FILTERS, ROWS

from ragtune.errors import FilterError
from ragtune.store.filters import (
    CHUNK_META_FIELDS,
    LIST_FIELDS,
    compile_predicate,
    compile_sql,
    matches,
    validate_filter,
)
from ragtune.types import ChunkMeta

pytestmark = pytest.mark.unit

# Three fields are real columns (with TEXT / INTEGER affinity), the rest live in a JSON column,
# as a store might lay them out.
REAL_COLUMNS = {"source_type": "TEXT", "page_number": "INTEGER", "is_ocr": "INTEGER"}
COLUMNS = {
    name: f"c.{name}" if name in REAL_COLUMNS else f"json_extract(c.meta, '$.{name}')" for name in CHUNK_META_FIELDS
}


@pytest.fixture()
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    real = ", ".join(f"{name} {sql_type}" for name, sql_type in REAL_COLUMNS.items())
    connection.execute(f"CREATE TABLE chunks (id INTEGER PRIMARY KEY, {real}, meta TEXT NOT NULL)")
    for i, row in enumerate(ROWS):
        meta = {key: value for key, value in row.items() if key not in REAL_COLUMNS}
        connection.execute(
            "INSERT INTO chunks (id, source_type, page_number, is_ocr, meta) VALUES (?, ?, ?, ?, ?)",
            (i, row.get("source_type"), row.get("page_number"), row.get("is_ocr"), json.dumps(meta)),
        )
    yield connection
    connection.close()


def sql_ids(connection: sqlite3.Connection, filter: Any) -> set[int]:
    where, params = compile_sql(filter, COLUMNS, LIST_FIELDS)
    return {row[0] for row in connection.execute(f"SELECT c.id FROM chunks AS c WHERE {where}", params)}


def python_ids(filter: Any) -> set[int]:
    return {i for i, row in enumerate(ROWS) if matches(filter, row)}


class TestSqlMatchesPython:
    @pytest.mark.parametrize("filter", PARITY_FILTERS, ids=[json.dumps(f, ensure_ascii=False) for f in PARITY_FILTERS])
    def test_same_rows(self, db: sqlite3.Connection, filter: dict[str, Any]) -> None:
        assert validate_filter(filter) == (filter or None)
        assert sql_ids(db, filter) == python_ids(filter)

    def test_filters_are_selective(self, db: sqlite3.Connection) -> None:
        # Parity is only meaningful if most filters select some rows and reject others.
        partial = [f for f in PARITY_FILTERS if 0 < len(python_ids(f)) < len(ROWS)]
        assert len(partial) >= len(PARITY_FILTERS) * 0.8

    def test_missing_field_is_not_equal(self, db: sqlite3.Connection) -> None:
        without_author = {i for i, row in enumerate(ROWS) if row.get("author") is None}
        assert without_author
        assert without_author <= sql_ids(db, {"author": {"$ne": "Ann"}})
        assert without_author <= sql_ids(db, {"author": {"$nin": ["Ann", "Bob"]}})
        assert not without_author & sql_ids(db, {"author": {"$exists": True}})

    def test_cross_type_values_never_match(self, db: sqlite3.Connection) -> None:
        # Row values of the wrong type (author 7, the list element 1) stay apart from strings.
        numeric_author = {i for i, row in enumerate(ROWS) if row.get("author") == 7}
        assert numeric_author
        assert not numeric_author & sql_ids(db, {"author": {"$gte": "0"}})
        assert numeric_author <= sql_ids(db, {"author": {"$ne": "7"}})
        assert not sql_ids(db, {"tags": {"$in": ["1"]}})


class TestCompileSql:
    def test_shape(self) -> None:
        where, params = compile_sql({"source_type": "pdf", "page_number": {"$gte": 3}}, COLUMNS, LIST_FIELDS)
        assert where == (
            "((typeof(c.source_type) = 'text' AND c.source_type = ?)"
            " AND (typeof(c.page_number) IN ('integer', 'real') AND c.page_number >= ?))"
        )
        assert params == ["pdf", 3]

    def test_list_field_uses_json_each(self) -> None:
        where, params = compile_sql({"tags": "x"}, COLUMNS, LIST_FIELDS)
        assert where == (
            "EXISTS (SELECT 1 FROM json_each(json_extract(c.meta, '$.tags')) "
            "WHERE (typeof(value) = 'text' AND value = ?))"
        )
        assert params == ["x"]

    def test_booleans_bind_as_integers(self) -> None:
        _, params = compile_sql({"is_ocr": True, "tags": {"$in": [False]}}, COLUMNS, LIST_FIELDS)
        assert params == [1, 0]
        assert all(type(param) is int for param in params)

    def test_null_equality(self) -> None:
        assert compile_sql({"author": None}, COLUMNS, LIST_FIELDS) == ("(json_extract(c.meta, '$.author') IS NULL)", [])

    @pytest.mark.parametrize("empty", [None, {}, "", "  ", "{}"])
    def test_empty_filter_selects_everything(self, empty: Any) -> None:
        assert compile_sql(empty, COLUMNS, LIST_FIELDS) == ("1", [])

    def test_accepts_json_string(self) -> None:
        assert compile_sql('{"source_type": "pdf"}', COLUMNS, LIST_FIELDS) == compile_sql(
            {"source_type": "pdf"}, COLUMNS, LIST_FIELDS
        )

    def test_values_never_in_sql_text(self) -> None:
        where, params = compile_sql(
            {"author": "Ann", "$or": [{"tags": {"$in": ["zz1", "zz2"]}}, {"section_title": {"$contains": "zz3"}}]},
            COLUMNS,
            LIST_FIELDS,
        )
        assert params == ["Ann", "zz1", "zz2", "zz3"]
        assert not any(str(value) in where for value in params)
        assert where.count("?") == len(params)

    def test_field_without_column_is_rejected(self) -> None:
        with pytest.raises(FilterError, match="filter: unknown field 'author'"):
            compile_sql({"author": "Ann"}, {"source_type": "c.source_type"}, frozenset())

    def test_range_on_list_field_is_rejected(self) -> None:
        with pytest.raises(FilterError, match=r"filter.tags.\$gt: \$gt does not apply to the list field 'tags'"):
            compile_sql({"tags": {"$gt": "a"}}, COLUMNS, LIST_FIELDS)


class TestInjection:
    @pytest.mark.parametrize("filter", INJECTION_VALUES)
    def test_values_match_nothing_and_leave_table_intact(self, db: sqlite3.Connection, filter: dict[str, Any]) -> None:
        assert sql_ids(db, filter) == set() == python_ids(filter)
        assert db.execute("SELECT count(*) FROM chunks").fetchone() == (len(ROWS),)

    @pytest.mark.parametrize("filter", INJECTION_KEYS)
    def test_keys_are_rejected(self, db: sqlite3.Connection, filter: dict[str, Any]) -> None:
        with pytest.raises(FilterError):
            validate_filter(filter)
        with pytest.raises(FilterError):
            compile_sql(filter, COLUMNS, LIST_FIELDS)
        assert db.execute("SELECT count(*) FROM chunks").fetchone() == (len(ROWS),)


OPS = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $contains"


class TestValidateFilter:
    @pytest.mark.parametrize(
        ("filter", "message"),
        [
            (
                {"page_number": {"$gtee": 3}},
                f"filter.page_number: unknown operator '$gtee' — did you mean '$gte'? (valid: {OPS})",
            ),
            (
                {"page_number": {"gte": 3}},
                f"filter.page_number: unknown operator 'gte' — did you mean '$gte'? (valid: {OPS})",
            ),
            ({"sourcetype": "pdf"}, "filter: unknown field 'sourcetype' — did you mean 'source_type'?"),
            (
                {"$or": [{"source_type": "pdf"}, {"pagenumber": 3}]},
                "filter.$or[1]: unknown field 'pagenumber' — did you mean 'page_number'?",
            ),
            (
                {"$and": [{"$not": {"tags": {"$contians": "x"}}}]},
                f"filter.$and[0].$not.tags: unknown operator '$contians' — did you mean '$contains'? (valid: {OPS})",
            ),
            ({"$nor": []}, "filter: unknown operator '$nor' — did you mean '$or'? (valid: $and, $or, $not)"),
            ({"$gte": 3}, 'filter: \'$gte\' compares a field — write {"<field>": {"$gte": ...}}'),
            ({"tags": {"$in": "x"}}, 'filter.tags.$in: $in expects a list, got "x" — write {"$in": ["x"]}'),
            ({"tags": {"$nin": 3}}, 'filter.tags.$nin: $nin expects a list, got 3 — write {"$nin": [3]}'),
            ({"tags": ["x", "y"]}, 'filter.tags: a list needs an operator — write {"$in": [...]}'),
            ({"page_number": "3"}, 'filter.page_number: expects a number, got "3"'),
            ({"page_number": {"$in": [1, "2"]}}, 'filter.page_number.$in[1]: expects a number, got "2"'),
            ({"page_number": True}, "filter.page_number: expects a number, got true"),
            ({"is_ocr": 1}, "filter.is_ocr: expects true or false, got 1"),
            ({"author": 3}, "filter.author: expects a string, got 3"),
            ({"page_number": {"$gt": None}}, "filter.page_number.$gt: $gt expects a number or a string, got null"),
            ({"page_number": {"$gt": True}}, "filter.page_number.$gt: $gt expects a number or a string, got true"),
            ({"is_ocr": {"$lt": True}}, "filter.is_ocr.$lt: $lt does not apply to the bool field 'is_ocr' — use $eq"),
            ({"word_count": {"$contains": 3}}, "filter.word_count.$contains: $contains applies to text and list"),
            ({"section_title": {"$contains": 3}}, "filter.section_title.$contains: expects a string, got 3"),
            ({"tags": {"$contains": None}}, "filter.tags.$contains: expects a value, got null"),
            ({"author": {"$exists": 1}}, "filter.author.$exists: $exists expects true or false, got 1"),
            ({"author": {"$eq": {"a": 1}}}, "filter.author.$eq: expected a string, number, boolean or null"),
            ({"page_number": {}}, "filter.page_number: empty operator object"),
            ({"page_number": float("nan")}, "filter.page_number: NaN is not a value"),
            ({"page_number": 2**64}, "filter.page_number: integer 18446744073709551616 is out of the 64-bit range"),
            ({"$or": []}, "filter.$or must be a non-empty list of filter objects"),
            ({"$and": {"source_type": "pdf"}}, "filter.$and must be a non-empty list of filter objects"),
            ({"$or": ["pdf"]}, "filter.$or[0] must be a filter object, got a string"),
            ({"$not": [{"source_type": "pdf"}]}, 'filter.$not must be a filter object, e.g. {"$not": {'),
            (
                {"page_number": {"$not": {"$gt": 3}}},
                'filter.page_number: \'$not\' negates a whole condition — write {"$not": {"page_number": ...}}',
            ),
            ({"page_number": {"$or": [1, 2]}}, "filter.page_number: '$or' combines whole conditions"),
            ([{"source_type": "pdf"}], "filter must be a JSON object, got a list"),
            ('["pdf"]', "filter must be a JSON object, got a list"),
            ("source_type = 'pdf'", "filter is not valid JSON (Expecting value at line 1 column 1)"),
            ('{"source_type": "pdf", "source_type": "md"}', "filter: key 'source_type' appears twice"),
            ({1: "x"}, "filter: keys must be strings, got 1"),
        ],
    )
    def test_errors(self, filter: Any, message: str) -> None:
        with pytest.raises(FilterError) as excinfo:
            validate_filter(filter)
        assert str(excinfo.value).startswith(message)

    def test_unknown_field_without_suggestion_lists_fields(self) -> None:
        with pytest.raises(FilterError) as excinfo:
            validate_filter({"zzz": 1})
        assert (
            str(excinfo.value) == f"filter: unknown field 'zzz' (known fields: {', '.join(sorted(CHUNK_META_FIELDS))})"
        )

    @pytest.mark.parametrize("empty", [None, {}, "", " \n", "{}"])
    def test_empty_is_none(self, empty: Any) -> None:
        assert validate_filter(empty) is None

    def test_returns_plain_copy(self) -> None:
        original = {"tags": {"$in": ("x", "y")}, "$or": [{"page_number": 1}]}
        validated = validate_filter(original)
        assert validated == {"tags": {"$in": ["x", "y"]}, "$or": [{"page_number": 1}]}
        assert validated is not original

    def test_json_string(self) -> None:
        assert validate_filter('{"page_number": {"$gte": 3}}') == {"page_number": {"$gte": 3}}

    def test_default_fields_are_chunk_meta(self) -> None:
        assert set(CHUNK_META_FIELDS) == set(ChunkMeta.model_fields)
        assert CHUNK_META_FIELDS["page_number"] == "number"
        assert CHUNK_META_FIELDS["is_ocr"] == "bool"
        assert CHUNK_META_FIELDS["author"] == "text"
        assert sorted(LIST_FIELDS) == ["acl", "heading_path", "pii", "tags"]

    def test_field_names_without_kinds(self) -> None:
        # A plain collection of names checks names only.
        assert validate_filter({"page_number": "3"}, fields=["page_number"]) == {"page_number": "3"}
        with pytest.raises(FilterError, match="unknown field 'pages'"):
            validate_filter({"pages": 3}, fields=["page_number"])

    def test_any_field_when_fields_is_none(self) -> None:
        assert validate_filter({"custom": {"$in": [1, "a"]}}, fields=None) == {"custom": {"$in": [1, "a"]}}


class TestMatches:
    META = ChunkMeta(source="a.pdf", source_type="pdf", page_number=4, tags=["x", "y"], is_ocr=True).model_dump()

    @pytest.mark.parametrize(
        ("filter", "expected"),
        [
            ({"source_type": "pdf"}, True),
            ({"page_number": {"$gte": 3, "$lt": 5}}, True),
            ({"page_number": {"$gt": "3"}}, False),  # a number never compares with a string
            ({"tags": "x"}, True),
            ({"tags": {"$contains": "z"}}, False),
            ({"tags": {"$in": ["z", "y"]}}, True),
            ({"tags": {"$nin": ["z", "y"]}}, False),
            ({"author": None}, True),
            ({"author": {"$ne": "Ann"}}, True),
            ({"author": {"$exists": True}}, False),
            ({"is_ocr": True}, True),
            ({"is_ocr": 1}, True),  # booleans are the integers 1/0, as in SQLite
            ({"$not": {"$or": [{"source_type": "md"}, {"tags": "y"}]}}, False),
            ({"missing_field": {"$ne": 1}}, True),
        ],
    )
    def test_matches(self, filter: dict[str, Any], expected: bool) -> None:
        assert matches(filter, self.META) is expected

    def test_compile_predicate_reuses_one_filter(self) -> None:
        predicate = compile_predicate('{"tags": "legal"}')
        assert [predicate({"tags": tags}) for tags in (["legal"], [], None, ["a", "legal"])] == [
            True,
            False,
            False,
            True,
        ]

    def test_empty_matches_everything(self) -> None:
        assert matches(None, {}) and matches({}, {"a": 1})

    def test_malformed_filter_raises(self) -> None:
        with pytest.raises(FilterError, match="unknown operator"):
            matches({"a": {"$gtee": 1}}, {"a": 2})
