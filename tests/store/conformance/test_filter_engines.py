"""The filter compilers for Postgres and Milvus, run by the engines themselves on rows of every odd type (numbers
where strings belong, nulls, mixed lists) and on injection attempts: each selects exactly what ``matches`` selects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from store_cases import INJECTION_KEYS, INJECTION_VALUES, PARITY_FILTERS, ROWS

from ragtune.errors import FilterError
from ragtune.store.filters import (
    CHUNK_META_FIELDS,
    LIST_FIELDS,
    PgColumn,
    compile_milvus,
    compile_postgres,
    compile_predicate,
    matches,
    milvus_string,
)

pytestmark = pytest.mark.integration

# As the Postgres store lays them out: a few typed columns, the rest in one jsonb document.
TYPED = {"source_type": "text", "page_number": "number"}
PG_COLUMNS = {name: PgColumn(f"c.{name}", TYPED[name]) if name in TYPED else PgColumn("c.meta", "json")  # type: ignore[arg-type]
              for name in CHUNK_META_FIELDS}
FILTERS = PARITY_FILTERS + INJECTION_VALUES + [
    {"author": {"$in": ['O"Brien', "a\\b", "line\nbreak", "Zoë"]}},
    {"section_title": {"$contains": "%"}},
    {"$not": {"section_title": {"$contains": "Scope"}}},
    {"word_count": {"$gt": 1e300}},
    {"word_count": {"$lt": float("inf")}},
    {"page_number": {"$in": [3, 10.0]}, "is_ocr": {"$ne": 1}},
]
ROWS_PLUS = ROWS + [{"author": 'O"Brien'}, {"author": "a\\b"}, {"author": "line\nbreak"},
                    {"section_title": "100% sure"}]


def python_ids(filter: Any) -> set[int]:
    return {i for i, row in enumerate(ROWS_PLUS) if matches(filter, row)}


@pytest.fixture(scope="module")
def pg(postgres_url: str) -> Iterator[Any]:
    import psycopg

    conn = psycopg.connect(postgres_url, autocommit=True)
    conn.execute("CREATE SCHEMA IF NOT EXISTS filter_parity")
    conn.execute("DROP TABLE IF EXISTS filter_parity.chunks")
    conn.execute("CREATE TABLE filter_parity.chunks (id INT PRIMARY KEY, source_type TEXT, page_number INT,"
                 " meta JSONB NOT NULL)")
    with conn.cursor() as cur:
        for i, row in enumerate(ROWS_PLUS):
            meta = {k: v for k, v in row.items() if k not in TYPED}
            cur.execute("INSERT INTO filter_parity.chunks VALUES (%s, %s, %s, %s)",
                        (i, row.get("source_type"), row.get("page_number"), json.dumps(meta)))
    yield conn
    conn.execute("DROP SCHEMA filter_parity CASCADE")
    conn.close()


def pg_ids(conn: Any, filter: Any) -> set[int]:
    where, params = compile_postgres(filter, PG_COLUMNS, LIST_FIELDS)
    return {r[0] for r in conn.execute(f"SELECT c.id FROM filter_parity.chunks c WHERE {where}", params)}


@pytest.mark.parametrize("filter", FILTERS, ids=[json.dumps(f, ensure_ascii=False) for f in FILTERS])
def test_postgres_selects_what_matches_selects(pg: Any, filter: dict[str, Any]) -> None:
    assert pg_ids(pg, filter) == python_ids(filter)


def test_postgres_values_are_parameters_and_keys_are_checked(pg: Any) -> None:
    where, params = compile_postgres({"author": "x' OR 1=1 --", "tags": {"$in": ["zz1"]}}, PG_COLUMNS)
    assert "x' OR" not in where and "zz1" not in where
    assert where.count("%s") == len(params)
    for filter in INJECTION_KEYS:
        with pytest.raises(FilterError):
            compile_postgres(filter, PG_COLUMNS)
    assert pg.execute("SELECT count(*) FROM filter_parity.chunks").fetchone()[0] == len(ROWS_PLUS)


# --- Milvus: every field in one JSON column; rows as the store writes them (nulls left out) ------------


def _milvus_rows() -> list[dict[str, Any]]:
    return [{"id": i, "vector": [1.0, 0.0], "meta": {k: v for k, v in row.items() if v is not None}}
            for i, row in enumerate(ROWS_PLUS)]


def _collection(client: Any, name: str) -> None:
    from pymilvus import DataType

    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("meta", DataType.JSON)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="FLAT", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index)
    client.insert(name, _milvus_rows())
    client.flush(name)


@pytest.fixture(scope="module", params=["server", "lite"])
def milvus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pymilvus import MilvusClient

    if request.param == "server":
        url = request.getfixturevalue("milvus_url")
        client = MilvusClient(uri="http://" + url.removeprefix("milvus://"))
    else:
        pytest.importorskip("milvus_lite")
        client = MilvusClient(str(tmp_path_factory.mktemp("lite") / "filters.db"))
    _collection(client, "filter_parity")
    yield client
    client.drop_collection("filter_parity")


def milvus_ids(client: Any, filter: Any) -> set[int]:
    expression, exact = compile_milvus(filter, fields=None)
    if expression is None:
        expression = "id >= 0"
    rows = client.query("filter_parity", filter=expression, output_fields=["id", "meta"], limit=1000,
                        consistency_level="Strong")
    if exact:
        return {r["id"] for r in rows}
    keep = compile_predicate(filter)
    selected = {r["id"] for r in rows if keep(r["meta"])}
    # A superset, never a subset: narrowing it is the store's job.
    assert selected <= {r["id"] for r in rows}
    return selected


@pytest.mark.parametrize("filter", FILTERS, ids=[json.dumps(f, ensure_ascii=False) for f in FILTERS])
def test_milvus_selects_what_matches_selects(milvus: Any, filter: dict[str, Any]) -> None:
    assert milvus_ids(milvus, filter) == python_ids(filter)


def test_milvus_literals_are_escaped_and_keys_are_checked(milvus: Any) -> None:
    assert milvus_string('a"b\\c\n') == '"a\\"b\\\\c\\n"'
    assert milvus_string("nul\x00") is None
    expression, exact = compile_milvus({"author": '" or id >= 0 or "'})
    assert exact and expression == '((exists meta["author"]) and ((meta["author"] == "\\" or id >= 0 or \\"")))'
    assert milvus_ids(milvus, {"author": '" or id >= 0 or "'}) == set()
    for filter in INJECTION_KEYS:
        with pytest.raises(FilterError):
            compile_milvus(filter)
    assert len(milvus.query("filter_parity", filter="id >= 0", output_fields=["id"], limit=1000)) == len(ROWS_PLUS)


def test_milvus_inexact_conditions_widen_under_negation() -> None:
    assert compile_milvus({"section_title": {"$contains": "x"}}) == ("(id >= 0)", False)
    assert compile_milvus({"$not": {"section_title": {"$contains": "x"}}}) == ("(not (id < 0))", False)
    assert compile_milvus({"author": "Ann"})[1] is True
