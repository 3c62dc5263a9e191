"""The one metadata filter language: validation, compilation to SQLite, and matching in Python."""

from __future__ import annotations

import difflib
import json
import math
import operator
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from ragtune.errors import FilterError
from ragtune.types import ChunkMeta

#: What a field holds; validation checks values against it ("any" checks nothing).
#: "list" is a list of scalars (tags, heading_path): equality and $contains mean "contains".
FieldKind = Literal["text", "number", "bool", "list", "any"]

COMPARISON_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$contains")
LOGICAL_OPERATORS = ("$and", "$or", "$not")

_RANGE_SQL = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_RANGE_PY: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
_KIND_WORDS = {"text": "a string", "number": "a number", "bool": "true or false"}
_EXAMPLE = '{"source_type": "pdf", "page_number": {"$gte": 3}}'
_INT64 = (-(2**63), 2**63 - 1)  # SQLite's integer range; larger ints fail to bind


def _kind_of(annotation: Any) -> FieldKind:
    if get_origin(annotation) in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(options) != 1:
            return "any"
        annotation = options[0]
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return "list"
    if annotation is bool:
        return "bool"
    if annotation in (int, float):
        return "number"
    if annotation is str:
        return "text"
    return "any"


#: The fields of ``ChunkMeta`` and their kinds: the default field set of the filter language.
CHUNK_META_FIELDS: Mapping[str, FieldKind] = types.MappingProxyType(
    {name: _kind_of(info.annotation) for name, info in ChunkMeta.model_fields.items()}
)
#: The list-valued ``ChunkMeta`` fields, as ``compile_sql`` needs them.
LIST_FIELDS = frozenset(name for name, kind in CHUNK_META_FIELDS.items() if kind == "list")


@dataclass(frozen=True)
class _And:
    parts: tuple[_Node, ...]


@dataclass(frozen=True)
class _Or:
    parts: tuple[_Node, ...]


@dataclass(frozen=True)
class _Not:
    part: _Node


@dataclass(frozen=True)
class _Condition:
    field: str
    op: str
    value: Any


_Node = _And | _Or | _Not | _Condition


def validate_filter(
    filter: Mapping[str, Any] | str | None,
    fields: Mapping[str, FieldKind] | Collection[str] | None = CHUNK_META_FIELDS,
) -> dict[str, Any] | None:
    """Check a filter and return it as a plain dict, or None when it selects everything.

    The language: a JSON object whose entries must all hold (implicit AND). A field maps to a value
    (equality) or to an object of operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists
    $contains``. ``$and``/``$or`` take a non-empty list of filters, ``$not`` one filter. Values are
    strings, numbers, booleans or null; ``$in``/``$nin`` take a list of them.

    Semantics, shared by ``compile_sql`` and ``matches``:

    - a value equals only a value of the same type family (numbers and booleans, or strings);
      ``null`` equality means "missing or null"; ``$ne``/``$nin`` are the negations, so a missing
      field is "not equal" to anything but null;
    - on a list field, equality and ``$contains`` mean "the list contains the value", ``$in``
      "contains any of them"; on a text field ``$contains`` is a case-sensitive substring test;
    - ``$gt``-style comparisons hold only between numbers or between strings (ISO dates compare
      correctly); ``$exists: true`` means "present and not null".

    ``fields`` names the fields a filter may use, with their kinds for type checks (default: the
    ``ChunkMeta`` fields); a plain collection of names skips type checks; None allows any field.
    A JSON string is parsed first.

    Raises:
        FilterError: naming the exact place in the filter and the fix, e.g.
            ``filter.page_number: unknown operator '$gtee' — did you mean '$gte'? (valid: ...)``.
    """
    loaded = _load(filter)
    if not loaded:
        return None
    _parse(loaded, "filter", _kinds(fields))
    return _plain(loaded)


def compile_sql(
    filter: Mapping[str, Any] | str | None,
    columns: Mapping[str, str],
    list_fields: frozenset[str] = LIST_FIELDS,
) -> tuple[str, list[Any]]:
    """Compile a filter to an SQLite WHERE fragment and its bound parameters.

    ``columns`` maps each filterable field to a trusted SQL expression chosen by the store (a column
    such as ``"c.source_type"`` or ``"json_extract(c.meta, '$.author')"``); only those expressions
    reach the SQL text, every value is a ``?`` parameter. ``list_fields`` are fields whose
    expression yields a JSON array. Columns should have TEXT, INTEGER or REAL affinity (or none),
    and the default BINARY collation, for the results to equal ``matches``. A filter that
    selects everything compiles to ``("1", [])``.

    Raises:
        FilterError: the filter is malformed or names a field that is not in ``columns``.
    """
    loaded = _load(filter)
    if not loaded:
        return "1", []
    kinds: dict[str, FieldKind] = {name: "list" if name in list_fields else "any" for name in columns}
    node = _parse(loaded, "filter", kinds)
    params: list[Any] = []
    return _sql(node, columns, list_fields, params), params


def compile_predicate(filter: Mapping[str, Any] | str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a filter once into a function of a metadata mapping, for backends that filter in Python.

    Field names are not checked against a field set here (``validate_filter`` does that); a field
    whose value in the mapping is a list gets list semantics.
    """
    loaded = _load(filter)
    if not loaded:
        return lambda meta: True
    node = _parse(loaded, "filter", None)
    return lambda meta: _evaluate(node, meta)


def matches(filter: Mapping[str, Any] | str | None, meta: Mapping[str, Any]) -> bool:
    """Whether ``meta`` (e.g. ``chunk.meta.model_dump()``) satisfies ``filter``, with ``compile_sql``'s semantics."""
    return compile_predicate(filter)(meta)


# --- parsing -------------------------------------------------------------------------------------


def _load(filter: Mapping[str, Any] | str | None) -> Mapping[str, Any] | None:
    if filter is None:
        return None
    if isinstance(filter, str):
        if not filter.strip():
            return None
        try:
            filter = json.loads(filter, object_pairs_hook=_reject_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise FilterError(
                f"filter is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}) — "
                f"write it like {_EXAMPLE}"
            ) from None
    if not isinstance(filter, Mapping):
        raise FilterError(f"filter must be a JSON object, got {_type_name(filter)} — write it like {_EXAMPLE}")
    return filter


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # json.loads would silently keep the last one, dropping a condition the user wrote.
            raise FilterError(f"filter: key {key!r} appears twice in one object — combine the conditions with $and")
        result[key] = value
    return result


def _kinds(fields: Mapping[str, FieldKind] | Collection[str] | None) -> Mapping[str, FieldKind] | None:
    if fields is None or isinstance(fields, Mapping):
        return fields
    return {name: "any" for name in fields}


def _parse(filter: Mapping[str, Any], path: str, kinds: Mapping[str, FieldKind] | None) -> _Node:
    parts: list[_Node] = []
    for key, value in filter.items():
        if not isinstance(key, str):
            raise FilterError(f"{path}: keys must be strings, got {key!r}")
        if key.startswith("$"):
            parts.append(_parse_logical(key, value, path, kinds))
        else:
            parts.append(_parse_field(key, value, f"{path}.{key}", _field_kind(key, path, kinds)))
    return parts[0] if len(parts) == 1 else _And(tuple(parts))


def _parse_logical(key: str, value: Any, path: str, kinds: Mapping[str, FieldKind] | None) -> _Node:
    where = f"{path}.{key}"
    if key in ("$and", "$or"):
        if not isinstance(value, (list, tuple)) or not value:
            raise FilterError(
                f"{where} must be a non-empty list of filter objects, e.g. "
                f'{{"{key}": [{{"source_type": "pdf"}}, {{"page_number": 1}}]}}'
            )
        parts = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise FilterError(f"{where}[{i}] must be a filter object, got {_type_name(item)}")
            parts.append(_parse(item, f"{where}[{i}]", kinds))
        return _And(tuple(parts)) if key == "$and" else _Or(tuple(parts))
    if key == "$not":
        if not isinstance(value, Mapping):
            raise FilterError(f'{where} must be a filter object, e.g. {{"$not": {{"source_type": "pdf"}}}}')
        return _Not(_parse(value, where, kinds))
    if key in COMPARISON_OPERATORS:
        raise FilterError(f'{path}: \'{key}\' compares a field — write {{"<field>": {{"{key}": ...}}}}')
    raise FilterError(
        f"{path}: unknown operator {key!r}{_suggestion(key, LOGICAL_OPERATORS)} (valid: {', '.join(LOGICAL_OPERATORS)})"
    )


def _field_kind(name: str, path: str, kinds: Mapping[str, FieldKind] | None) -> FieldKind:
    if kinds is None:
        return "any"
    if name in kinds:
        return kinds[name]
    suggestion = _suggestion(name, list(kinds))
    if suggestion:
        raise FilterError(f"{path}: unknown field {name!r}{suggestion}")
    raise FilterError(f"{path}: unknown field {name!r} (known fields: {', '.join(sorted(kinds))})")


def _parse_field(name: str, value: Any, path: str, kind: FieldKind) -> _Node:
    if isinstance(value, (list, tuple)):
        raise FilterError(f'{path}: a list needs an operator — write {{"$in": [...]}} to match any of the values')
    if not isinstance(value, Mapping):
        return _parse_condition(name, "$eq", value, path, kind)
    if not value:
        raise FilterError(f'{path}: empty operator object — give at least one operator, e.g. {{"$eq": ...}}')
    conditions: list[_Node] = []
    for op, operand in value.items():
        if op in ("$and", "$or"):
            raise FilterError(
                f'{path}: \'{op}\' combines whole conditions — write {{"{op}": [{{"{name}": ...}}, ...]}}'
            )
        if op == "$not":
            raise FilterError(f'{path}: \'$not\' negates a whole condition — write {{"$not": {{"{name}": ...}}}}')
        if op not in COMPARISON_OPERATORS:
            raise FilterError(
                f"{path}: unknown operator {op!r}{_suggestion(str(op), COMPARISON_OPERATORS)} "
                f"(valid: {', '.join(COMPARISON_OPERATORS)})"
            )
        conditions.append(_parse_condition(name, op, operand, f"{path}.{op}", kind))
    return conditions[0] if len(conditions) == 1 else _And(tuple(conditions))


def _parse_condition(name: str, op: str, operand: Any, path: str, kind: FieldKind) -> _Condition:
    if op in ("$eq", "$ne"):
        _check_scalar(operand, path, kind, allow_none=True)
    elif op in _RANGE_SQL:
        if kind in ("list", "bool"):
            instead = "$contains or $in" if kind == "list" else "$eq"
            raise FilterError(f"{path}: {op} does not apply to the {kind} field {name!r} — use {instead}")
        if operand is None or isinstance(operand, bool) or not isinstance(operand, (str, int, float)):
            raise FilterError(f"{path}: {op} expects a number or a string, got {_show(operand)}")
        _check_scalar(operand, path, kind, allow_none=False)
    elif op in ("$in", "$nin"):
        if not isinstance(operand, (list, tuple)):
            raise FilterError(
                f'{path}: {op} expects a list, got {_show(operand)} — write {{"{op}": [{_show(operand)}]}}'
            )
        for i, item in enumerate(operand):
            _check_scalar(item, f"{path}[{i}]", kind, allow_none=True)
        operand = tuple(operand)
    elif op == "$exists":
        if not isinstance(operand, bool):
            raise FilterError(f"{path}: $exists expects true or false, got {_show(operand)}")
    else:  # $contains
        if kind in ("number", "bool"):
            raise FilterError(
                f"{path}: $contains applies to text and list fields; {name!r} is a {kind} field — use $eq"
            )
        _check_scalar(operand, path, kind, allow_none=False)
    return _Condition(name, op, operand)


def _check_scalar(value: Any, path: str, kind: FieldKind, *, allow_none: bool) -> None:
    if value is None:
        if not allow_none:
            raise FilterError(f"{path}: expects a value, got null")
        return
    if isinstance(value, bool):
        family = "bool"
    elif isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            raise FilterError(f"{path}: NaN is not a value a field can equal or compare to")
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            raise FilterError(f"{path}: integer {value} is out of the 64-bit range")
        family = "number"
    elif isinstance(value, str):
        family = "text"
    else:
        raise FilterError(f"{path}: expected a string, number, boolean or null, got {_type_name(value)}")
    if kind in ("text", "number", "bool") and family != kind:
        raise FilterError(f"{path}: expects {_KIND_WORDS[kind]}, got {_show(value)}")


def _suggestion(word: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" — did you mean '{close[0]}'?" if close else ""


def _type_name(value: Any) -> str:
    for kind, words in ((Mapping, "an object"), (list, "a list"), (str, "a string")):
        if isinstance(value, kind):
            return words
    return type(value).__name__


def _show(value: Any) -> str:
    # Users write filters as JSON, so show their values as JSON.
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# --- SQLite --------------------------------------------------------------------------------------
# Every fragment is TRUE or FALSE, never NULL (typeof() guards the comparisons), so NOT and the
# $ne/$nin negations keep two-valued logic and a missing field counts as "not equal".


def _sql(node: _Node, columns: Mapping[str, str], list_fields: frozenset[str], params: list[Any]) -> str:
    if isinstance(node, _And):
        if not node.parts:  # an empty object inside $and/$or/$not selects everything
            return "1"
        return "(" + " AND ".join(_sql(part, columns, list_fields, params) for part in node.parts) + ")"
    if isinstance(node, _Or):
        return "(" + " OR ".join(_sql(part, columns, list_fields, params) for part in node.parts) + ")"
    if isinstance(node, _Not):
        return f"(NOT {_sql(node.part, columns, list_fields, params)})"
    expr, is_list, op, value = columns[node.field], node.field in list_fields, node.op, node.value
    if op == "$eq" or (op == "$contains" and is_list):
        return _sql_equal(expr, value, is_list, params)
    if op == "$ne":
        return f"(NOT {_sql_equal(expr, value, is_list, params)})"
    if op in _RANGE_SQL:
        return _sql_compare(expr, _RANGE_SQL[op], value, params)
    if op == "$in":
        return _sql_in(expr, value, is_list, params)
    if op == "$nin":
        return f"(NOT {_sql_in(expr, value, is_list, params)})"
    if op == "$exists":
        return f"({expr} IS NOT NULL)" if value else f"({expr} IS NULL)"
    # $contains on a scalar field: a substring of a text value; nothing else contains anything.
    if not isinstance(value, str):
        return "0"
    params.append(value)
    return f"(typeof({expr}) = 'text' AND instr({expr}, ?) > 0)"


def _sql_guard(expr: str, value: Any) -> str:
    # Without it SQLite would compare across types (every number sorts below every string) and
    # column affinity would turn '3' into 3; Python and JSON keep them apart.
    return f"typeof({expr}) = 'text'" if isinstance(value, str) else f"typeof({expr}) IN ('integer', 'real')"


def _sql_bind(value: Any) -> Any:
    # json_extract and SQLite columns hold booleans as 1/0.
    return int(value) if isinstance(value, bool) else value


def _sql_compare(expr: str, op: str, value: Any, params: list[Any]) -> str:
    params.append(_sql_bind(value))
    return f"({_sql_guard(expr, value)} AND {expr} {op} ?)"


def _sql_equal(expr: str, value: Any, is_list: bool, params: list[Any]) -> str:
    if value is None:
        return f"({expr} IS NULL)"
    if is_list:
        return f"EXISTS (SELECT 1 FROM json_each({expr}) WHERE {_sql_compare('value', '=', value, params)})"
    return _sql_compare(expr, "=", value, params)


def _sql_in(expr: str, values: tuple[Any, ...], is_list: bool, params: list[Any]) -> str:
    element = "value" if is_list else expr
    alternatives = []
    texts = [v for v in values if isinstance(v, str)]
    numbers = [v for v in values if v is not None and not isinstance(v, str)]
    for family in (texts, numbers):
        if family:
            params.extend(_sql_bind(v) for v in family)
            placeholders = ", ".join("?" * len(family))
            alternatives.append(f"({_sql_guard(element, family[0])} AND {element} IN ({placeholders}))")
    pieces = []
    if alternatives and is_list:
        pieces.append(f"EXISTS (SELECT 1 FROM json_each({expr}) WHERE {' OR '.join(alternatives)})")
    else:
        pieces.extend(alternatives)
    if any(v is None for v in values):
        pieces.append(f"({expr} IS NULL)")
    return "(" + " OR ".join(pieces) + ")" if pieces else "0"


# --- Python --------------------------------------------------------------------------------------


def _evaluate(node: _Node, meta: Mapping[str, Any]) -> bool:
    if isinstance(node, _And):
        return all(_evaluate(part, meta) for part in node.parts)
    if isinstance(node, _Or):
        return any(_evaluate(part, meta) for part in node.parts)
    if isinstance(node, _Not):
        return not _evaluate(node.part, meta)
    actual, op, value = meta.get(node.field), node.op, node.value
    if op == "$eq":
        return _py_equal(actual, value)
    if op == "$ne":
        return not _py_equal(actual, value)
    if op in _RANGE_PY:
        return _same_family(actual, value) and _RANGE_PY[op](actual, value)
    if op == "$in":
        return any(_py_equal(actual, item) for item in value)
    if op == "$nin":
        return not any(_py_equal(actual, item) for item in value)
    if op == "$exists":
        return (actual is not None) == value
    if isinstance(actual, (list, tuple)):  # $contains
        return _py_equal(actual, value)
    return isinstance(actual, str) and isinstance(value, str) and value in actual


def _py_equal(actual: Any, value: Any) -> bool:
    if value is None:
        return actual is None
    if isinstance(actual, (list, tuple)):
        return any(_same_family(item, value) and item == value for item in actual)
    return _same_family(actual, value) and actual == value


def _same_family(a: Any, b: Any) -> bool:
    # bool is an int subclass on purpose: SQLite stores booleans as the integers 1 and 0.
    return (isinstance(a, str) and isinstance(b, str)) or (isinstance(a, (int, float)) and isinstance(b, (int, float)))


# --- PostgreSQL ----------------------------------------------------------------------------------
# The same two-valued logic as SQLite: typed columns guard NULL with "IS NOT NULL" (so btree indexes still
# serve the positive case), JSON fields are tested by containment (served by a GIN index on the document) or
# wrapped in COALESCE(..., false). Strings compare byte-wise (COLLATE "C"), as SQLite and Python do.


@dataclass(frozen=True)
class PgColumn:
    """How a store lays out one filterable field in Postgres.

    ``kind`` "text" or "number": ``sql`` is a typed column (``c.source_type``, ``d.uri``). ``kind`` "json":
    ``sql`` is a jsonb document (``c.meta``) holding the field under its own name.
    """

    sql: str
    kind: Literal["text", "number", "json"]


def compile_postgres(
    filter: Mapping[str, Any] | str | None,
    columns: Mapping[str, PgColumn],
    list_fields: frozenset[str] = LIST_FIELDS,
) -> tuple[str, list[Any]]:
    """Compile a filter to a Postgres WHERE fragment with ``%s`` parameters (psycopg), selecting exactly what
    ``matches`` selects. Only the store's trusted column expressions reach the SQL text; every value and JSON
    key is a bound parameter. A filter that selects everything compiles to ``("TRUE", [])``.

    Raises:
        FilterError: the filter is malformed or names a field that is not in ``columns``.
    """
    loaded = _load(filter)
    if not loaded:
        return "TRUE", []
    kinds: dict[str, FieldKind] = {name: "list" if name in list_fields else "any" for name in columns}
    node = _parse(loaded, "filter", kinds)
    params: list[Any] = []
    return _pg(node, columns, list_fields, params), params


def _pg(node: _Node, columns: Mapping[str, PgColumn], list_fields: frozenset[str], params: list[Any]) -> str:
    if isinstance(node, _And):
        if not node.parts:
            return "TRUE"
        return "(" + " AND ".join(_pg(part, columns, list_fields, params) for part in node.parts) + ")"
    if isinstance(node, _Or):
        return "(" + " OR ".join(_pg(part, columns, list_fields, params) for part in node.parts) + ")"
    if isinstance(node, _Not):
        return f"(NOT {_pg(node.part, columns, list_fields, params)})"
    column, op, value = columns[node.field], node.op, node.value
    if column.kind == "json":
        return _pg_json(column.sql, node.field, op, value, node.field in list_fields, params)
    return _pg_typed(column, op, value, params)


def _pg_family(kind: str, value: Any) -> bool:
    # Whether a value can equal a value of a typed column at all (strings only text, numbers only numbers).
    return isinstance(value, str) if kind == "text" else isinstance(value, (int, float))


def _pg_bind_number(value: Any) -> Any:
    from decimal import Decimal

    return Decimal(int(value)) if isinstance(value, bool) else Decimal(repr(value)) if isinstance(value, float) \
        else Decimal(value)


def _pg_typed(column: PgColumn, op: str, value: Any, params: list[Any]) -> str:
    expr, kind = column.sql, column.kind
    text = ' COLLATE "C"' if kind == "text" else ""
    if op in ("$eq", "$ne"):
        if value is None:
            fragment = f"({expr} IS NULL)"
        elif not _pg_family(kind, value) or (isinstance(value, float) and math.isinf(value)):
            fragment = "FALSE"
        else:
            params.append(value if kind == "text" else _pg_bind_number(value))
            fragment = f"({expr} = %s AND {expr} IS NOT NULL)"
        return fragment if op == "$eq" else f"(NOT {fragment})"
    if op in _RANGE_SQL:
        if not _pg_family(kind, value):
            return "FALSE"
        params.append(value if kind == "text" else _pg_bind_number(value))
        return f"({expr}{text} {_RANGE_SQL[op]} %s AND {expr} IS NOT NULL)"
    if op in ("$in", "$nin"):
        same = [v for v in value if v is not None and _pg_family(kind, v)
                and not (isinstance(v, float) and math.isinf(v))]
        pieces = []
        if same:
            params.append(same if kind == "text" else [_pg_bind_number(v) for v in same])
            pieces.append(f"({expr} = ANY(%s) AND {expr} IS NOT NULL)")
        if any(v is None for v in value):
            pieces.append(f"({expr} IS NULL)")
        fragment = "(" + " OR ".join(pieces) + ")" if pieces else "FALSE"
        return fragment if op == "$in" else f"(NOT {fragment})"
    if op == "$exists":
        return f"({expr} IS NOT NULL)" if value else f"({expr} IS NULL)"
    # $contains on a scalar column: a substring of a text value.
    if kind != "text" or not isinstance(value, str):
        return "FALSE"
    params.append(value)
    return f"(strpos({expr}, %s) > 0 AND {expr} IS NOT NULL)"


def _pg_contains_json(document: str, field: str, value: Any, in_list: bool, params: list[Any]) -> str:
    """``document`` holds ``value`` under ``field`` (as an element when ``in_list``), by jsonb containment."""
    # Booleans and the numbers 1 and 0 are equal in the filter language (SQLite stores booleans as 1/0).
    alternatives = [value]
    if isinstance(value, bool):
        alternatives.append(int(value))
    elif isinstance(value, (int, float)) and value in (0, 1):
        alternatives.append(bool(value))
    pieces = []
    for alternative in alternatives:
        params.append(json.dumps({field: [alternative] if in_list else alternative}, ensure_ascii=False))
        pieces.append(f"{document} @> %s::jsonb")
    return "(" + " OR ".join(pieces) + ")"


def _pg_json(document: str, field: str, op: str, value: Any, is_list: bool, params: list[Any]) -> str:
    def typeof() -> str:
        params.append(field)
        return f"COALESCE(jsonb_typeof({document} -> %s), 'null')"

    def equal(item: Any) -> str:
        if item is None:
            return f"({typeof()} = 'null')"
        if isinstance(item, float) and math.isinf(item):  # JSON has no infinity, so nothing stored equals it
            return "FALSE"
        return _pg_contains_json(document, field, item, is_list, params)

    if op == "$eq" or (op == "$contains" and is_list):
        return equal(value)
    if op == "$ne":
        return f"(NOT {equal(value)})"
    if op in ("$in", "$nin"):
        fragment = "(" + " OR ".join(equal(v) for v in value) + ")" if value else "FALSE"
        return fragment if op == "$in" else f"(NOT {fragment})"
    if op == "$exists":
        return f"({typeof()} {'<>' if value else '='} 'null')"
    if op in _RANGE_SQL:
        if isinstance(value, str):
            kind = typeof()
            params.extend([field, value])
            return f"COALESCE({kind} = 'string' AND ({document} ->> %s) COLLATE \"C\" {_RANGE_SQL[op]} %s, false)"
        kind = typeof()
        params.extend([field, field, _pg_bind_number(value)])
        number = (f"(CASE {kind} WHEN 'number' THEN ({document} ->> %s)::numeric "
                  f"WHEN 'boolean' THEN ({document} ->> %s)::boolean::int END)")
        return f"COALESCE({number} {_RANGE_SQL[op]} %s, false)"
    # $contains on a scalar field: a substring of a text value.
    if not isinstance(value, str):
        return "FALSE"
    kind = typeof()
    params.extend([field, value])
    return f"COALESCE({kind} = 'string' AND strpos({document} ->> %s, %s) > 0, false)"


# --- Milvus --------------------------------------------------------------------------------------
# Milvus expressions take no bound parameters on every server (templates came with 2.5), so values become
# escaped literals. Every field lives in one JSON column. Each comparison is guarded by `exists`, so a
# missing field makes it false (not unknown) and `not` keeps two-valued logic on every engine. What Milvus
# cannot express exactly (a substring test: Milvus 2.3 matches prefixes only; strings with a NUL; infinity)
# compiles to a superset, and the store filters the engine's candidates with ``compile_predicate``.

_MILVUS_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def milvus_string(value: str) -> str | None:
    """A Milvus string literal equal to ``value``, or None when one cannot be written (a NUL character)."""
    if "\x00" in value:
        return None
    return '"' + "".join(_MILVUS_ESCAPES.get(ch, ch) for ch in value) + '"'


def _milvus_literal(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return None if math.isinf(value) else repr(value)
    return milvus_string(value)


def compile_milvus(
    filter: Mapping[str, Any] | str | None, *, json_field: str = "meta", primary_key: str = "id",
    list_fields: frozenset[str] = LIST_FIELDS, fields: Collection[str] | None = None,
) -> tuple[str | None, bool]:
    """Compile a filter to a Milvus boolean expression over the JSON column ``json_field``.

    Returns ``(expression, exact)``: ``expression`` is None when the filter selects everything; ``exact`` is
    False when the expression selects a superset, which the caller narrows with ``compile_predicate``.
    ``primary_key`` names the collection's non-negative integer key (``key >= 0`` is how a constant true is
    written). Field names and values reach the expression only as escaped string or number literals.

    Raises:
        FilterError: the filter is malformed or names a field not in ``fields`` (default: ``ChunkMeta``'s).
    """
    loaded = _load(filter)
    if not loaded:
        return None, True
    names = fields if fields is not None else CHUNK_META_FIELDS
    kinds: dict[str, FieldKind] = {name: "list" if name in list_fields else "any" for name in names}
    node = _parse(loaded, "filter", kinds)
    state = {"exact": True}
    expression = _milvus(node, True, _MilvusNames(json_field, primary_key, list_fields), state)
    return expression, state["exact"]


@dataclass(frozen=True)
class _MilvusNames:
    json_field: str
    primary_key: str
    list_fields: frozenset[str]

    @property
    def true(self) -> str:
        return f"({self.primary_key} >= 0)"

    @property
    def false(self) -> str:
        return f"({self.primary_key} < 0)"


def _milvus(node: _Node, positive: bool, names: _MilvusNames, state: dict[str, bool]) -> str:
    if isinstance(node, _And):
        if not node.parts:
            return names.true
        return "(" + " and ".join(_milvus(part, positive, names, state) for part in node.parts) + ")"
    if isinstance(node, _Or):
        return "(" + " or ".join(_milvus(part, positive, names, state) for part in node.parts) + ")"
    if isinstance(node, _Not):
        return f"(not {_milvus(node.part, not positive, names, state)})"
    fragment = _milvus_condition(node, names)
    if fragment is None:
        # Inexact: true where the condition counts positively, false under a negation, so the whole
        # expression can only select too much, never too little.
        state["exact"] = False
        return names.true if positive else names.false
    return fragment


def _milvus_condition(node: _Condition, names: _MilvusNames) -> str | None:
    key = milvus_string(node.field)
    if key is None:
        return None
    ref = f"{names.json_field}[{key}]"
    exists = f"(exists {ref})"
    is_list = node.field in names.list_fields
    op, value = node.op, node.value

    def equal(item: Any) -> str | None:
        if item is None:
            return f"(not {exists})"
        # Booleans and the numbers 1 and 0 are equal in the filter language.
        alternatives = [item]
        if isinstance(item, bool):
            alternatives.append(int(item))
        elif isinstance(item, (int, float)) and item in (0, 1):
            alternatives.append(bool(item))
        pieces = []
        for alternative in alternatives:
            literal = _milvus_literal(alternative)
            if literal is None:
                return None
            pieces.append(f"json_contains({ref}, {literal})" if is_list else f"({ref} == {literal})")
        return f"({exists} and ({' or '.join(pieces)}))"

    if op == "$eq" or (op == "$contains" and is_list):
        return equal(value)
    if op == "$ne":
        inner = equal(value)
        return None if inner is None else f"(not {inner})"
    if op in ("$in", "$nin"):
        if not value:
            fragment: str | None = names.false
        else:
            parts = [equal(v) for v in value]
            fragment = None if any(p is None for p in parts) else "(" + " or ".join(p for p in parts if p) + ")"
        if fragment is None:
            return None
        return fragment if op == "$in" else f"(not {fragment})"
    if op == "$exists":
        return exists if value else f"(not {exists})"
    if op in _RANGE_SQL:
        literal = _milvus_literal(value)
        if literal is None:
            return None
        return f"({exists} and ({ref} {_RANGE_SQL[op]} {literal}))"
    return None  # $contains on a text field: a substring test Milvus 2.3 cannot express
