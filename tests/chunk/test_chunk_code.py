"""CodeChunker: one chunk per definition with symbol metadata, exact offsets, full coverage and safe fallbacks."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from ragtune.chunk.code import CodeChunker, _grammar
from ragtune.errors import ConfigError
from ragtune.parse.code import parse_code
from ragtune.parse.markdown import parse_markdown
from ragtune.tokens import RegexTokenCounter
from ragtune.types import Chunk, Document

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "code"
ALL_FIXTURES = sorted(p.name for p in FIXTURES.iterdir())


def _doc(name: str) -> Document:
    return parse_code((FIXTURES / name).read_bytes(), name)


def _source_doc(name: str, source: str) -> Document:
    return parse_code(source.encode("utf-8"), name)


def _definitions(chunks: list[Chunk]) -> list[tuple[str | None, str | None, str | None]]:
    """(symbol, kind, parent) of each chunk that belongs to a symbol, in order, without repeats."""
    seen: list[tuple[str | None, str | None, str | None]] = []
    for chunk in chunks:
        entry = (chunk.meta.symbol, chunk.meta.symbol_kind, chunk.meta.parent_symbol)
        if chunk.meta.symbol is not None and entry not in seen:
            seen.append(entry)
    return seen


def _by_symbol(chunks: list[Chunk], symbol: str) -> Chunk:
    matches = [c for c in chunks if c.meta.symbol == symbol]
    assert len(matches) == 1, f"{symbol}: {len(matches)} chunks"
    return matches[0]


def _first(chunks: list[Chunk], symbol: str) -> Chunk:
    """The first chunk of a symbol that may be split into several."""
    return next(c for c in chunks if c.meta.symbol == symbol)


def _python_definition_source(source: str, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
    """A top-level definition's source as ast sees it: decorators included, plus the comment lines right above."""
    lines = source.split("\n")
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    while first > 1 and lines[first - 2].lstrip().startswith("#"):
        first -= 1
    assert node.end_lineno is not None
    return "\n".join(lines[first - 1 : node.end_lineno])


def assert_exact_and_covering(document: Document, chunks: list[Chunk]) -> None:
    """Chunk texts are exact slices, in order, and every non-blank character of the file lies in some chunk."""
    covered = [False] * len(document.text)
    for i, chunk in enumerate(chunks):
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.meta.chunk_index == i
        for pos in range(chunk.start, chunk.end):
            covered[pos] = True
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    missing = [ch for ch, ok in zip(document.text, covered, strict=True) if not ok and not ch.isspace()]
    assert not missing, f"not in any chunk: {''.join(missing)[:80]!r}"


class TestPython:
    def test_each_top_level_definition_is_one_chunk_with_its_exact_source(self):
        document = _doc("inventory.py")
        chunks = CodeChunker().split(document)
        tree = ast.parse(document.text)
        definitions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]

        assert [c.meta.symbol for c in chunks] == [None, *(n.name for n in definitions), None]
        for node in definitions:
            chunk = _by_symbol(chunks, node.name)
            assert chunk.text == _python_definition_source(document.text, node)
            assert chunk.meta.docstring == ast.get_docstring(node)
            assert chunk.meta.symbol_kind == ("class" if isinstance(node, ast.ClassDef) else "function")
            assert chunk.meta.parent_symbol is None
            assert chunk.meta.code_language == "python"
            assert chunk.meta.section_title == node.name

    def test_signature_is_the_def_line_without_decorators(self):
        chunks = CodeChunker().split(_doc("inventory.py"))
        assert _by_symbol(chunks, "unit_price").meta.signature == (
            'def unit_price(sku: str, *, currency: str = "EUR") -> float:'
        )
        assert _by_symbol(chunks, "sync_remote").meta.signature == (
            "async def sync_remote(items: list[Item],\n                      endpoint: str) -> int:"
        )
        assert _by_symbol(chunks, "Item").meta.signature == "class Item:"

    def test_leading_comment_and_decorator_belong_to_their_function(self):
        chunk = _by_symbol(CodeChunker().split(_doc("inventory.py")), "unit_price")
        assert chunk.text.startswith("# Cached because the price table never changes")
        assert "@functools.lru_cache(maxsize=128)\ndef unit_price(" in chunk.text

    def test_module_level_code_is_chunked_without_a_symbol(self):
        chunks = CodeChunker().split(_doc("inventory.py"))
        assert "import functools" in chunks[0].text and "REORDER_LEVEL = 5" in chunks[0].text
        assert chunks[-1].text.startswith('if __name__ == "__main__":')
        assert chunks[0].meta.symbol is None and chunks[0].meta.code_language == "python"

    def test_a_class_larger_than_the_budget_is_split_into_header_and_methods(self):
        chunks = CodeChunker(chunk_size=30, chunk_overlap=4).split(_doc("inventory.py"))
        header = [c for c in chunks if c.meta.symbol == "Item"]
        method = _by_symbol(chunks, "Item.needs_reorder")
        assert len(header) == 1
        assert header[0].text.startswith("@dataclass\nclass Item:")
        assert header[0].text.endswith("quantity: int")
        assert header[0].meta.symbol_kind == "class"
        assert method.text == "def needs_reorder(self) -> bool:\n        return self.quantity < REORDER_LEVEL"
        assert (method.meta.symbol_kind, method.meta.parent_symbol) == ("method", "Item")
        assert method.meta.signature == "def needs_reorder(self) -> bool:"

    def test_nested_classes_get_qualified_symbols(self):
        source = (
            'class Outer:\n    """Outer doc."""\n\n    class Inner:\n        def deep(self):\n            return 1\n\n'
            "    def m(self):\n        return 2\n"
        )
        chunks = CodeChunker(chunk_size=10, chunk_overlap=2).split(_source_doc("nested.py", source))
        assert _definitions(chunks) == [
            ("Outer", "class", None),
            ("Outer.Inner", "class", "Outer"),
            ("Outer.Inner.deep", "method", "Outer.Inner"),
            ("Outer.m", "method", "Outer"),
        ]
        assert all(c.meta.docstring == "Outer doc." for c in chunks if c.meta.symbol == "Outer")

    def test_an_oversized_function_is_split_and_every_piece_keeps_its_metadata(self):
        body = "\n".join(f"    total += values[{i}] * {i}  # step {i}" for i in range(120))
        head = 'import math\n\n\ndef weighted(values):\n    """Weighted sum."""\n    total = 0\n'
        source = f"{head}{body}\n    return total\n"
        document = _source_doc("big.py", source)
        chunks = CodeChunker(chunk_size=60, chunk_overlap=10).split(document)
        pieces = [c for c in chunks if c.meta.symbol == "weighted"]

        assert len(pieces) > 3
        counter = RegexTokenCounter()
        for piece in pieces:
            assert len(counter.spans(piece.text)) <= 60
            assert piece.meta.signature == "def weighted(values):"
            assert piece.meta.docstring == "Weighted sum."
            assert piece.meta.symbol_kind == "function"
        function_start = document.text.index("def weighted")
        assert pieces[0].start == function_start
        assert pieces[-1].text.endswith("return total")
        assert_exact_and_covering(document, chunks)

    def test_non_ascii_source_keeps_exact_character_offsets(self):
        # Two-, three- and four-byte UTF-8 characters: tree-sitter's byte offsets must map back to characters.
        source = (
            '"""Склад — stock 📦 ‘inventory’."""\n\nNAME = "Лагер"\n\n\n'
            "# Цена с НДС (€)\n"
            "def цена(штук: int, ставка: float) -> float:\n"
            '    """Возвращает цену — с налогом."""\n    return штук * ставка\n\n\n'
            "class Émoji:\n    icon = '🎉'\n"
        )
        document = _source_doc("zh.py", source)
        chunks = CodeChunker().split(document)
        tree = ast.parse(source)
        function, cls = tree.body[2], tree.body[3]
        assert isinstance(function, ast.FunctionDef) and isinstance(cls, ast.ClassDef)
        assert _by_symbol(chunks, "цена").text == _python_definition_source(source, function)
        assert _by_symbol(chunks, "цена").meta.docstring == "Возвращает цену — с налогом."
        assert _by_symbol(chunks, "Émoji").text == _python_definition_source(source, cls)
        assert_exact_and_covering(document, chunks)

    def test_a_syntax_error_keeps_the_valid_definitions_and_loses_no_line(self):
        source = "def good():\n    return 1\n\n\ndef broken(:\n    return (\n\n\ndef also_good():\n    return 2\n"
        document = _source_doc("broken.py", source)
        chunks = CodeChunker().split(document)
        assert "good" in [c.meta.symbol for c in chunks]
        assert_exact_and_covering(document, chunks)


class TestOtherLanguages:
    def test_javascript_functions_arrow_functions_and_classes(self):
        chunks = CodeChunker().split(_doc("shapes.js"))
        assert _definitions(chunks) == [
            ("distance", "function", None),
            ("circleArea", "function", None),
            ("Polygon", "class", None),
            ("range", "function", None),
        ]
        distance = _by_symbol(chunks, "distance")
        assert distance.meta.signature == "export function distance(a, b)"
        assert distance.meta.docstring == (
            "Distance between two points.\n@param {{x: number, y: number}} a\n@param {{x: number, y: number}} b"
        )
        assert distance.text.startswith("/**\n * Distance between two points.")
        assert distance.text.endswith("return hypot(a.x - b.x, a.y - b.y);\n}")
        arrow = _by_symbol(chunks, "circleArea")
        assert arrow.meta.signature == "export const circleArea = (r) =>"
        assert arrow.meta.docstring == "Area of a circle of radius r."
        assert _by_symbol(chunks, "range").meta.signature == "function* range(n)"
        assert chunks[-1].text == "export default { distance, circleArea, EPSILON, range };"

    def test_javascript_class_methods_get_their_class_as_parent(self):
        chunks = CodeChunker(chunk_size=40, chunk_overlap=4).split(_doc("shapes.js"))
        perimeter = _first(chunks, "Polygon.perimeter")
        assert (perimeter.meta.symbol_kind, perimeter.meta.parent_symbol) == ("method", "Polygon")
        assert perimeter.meta.signature == "perimeter()"
        assert perimeter.meta.docstring == "Sum of the side lengths."
        assert perimeter.text.startswith("/** Sum of the side lengths. */\n  perimeter() {")
        assert _by_symbol(chunks, "Polygon.constructor").meta.parent_symbol == "Polygon"

    def test_typescript_types_interfaces_functions_and_class_members(self):
        chunks = CodeChunker(chunk_size=40, chunk_overlap=4).split(_doc("orders.ts"))
        assert _definitions(chunks) == [
            ("Status", "type", None),
            ("Order", "interface", None),
            ("withVat", "function", None),
            ("formatId", "function", None),
            ("MailOrder", "class", None),
            ("MailOrder.constructor", "method", "MailOrder"),
            ("MailOrder.total", "method", "MailOrder"),
            ("MailOrder.ship", "method", "MailOrder"),
        ]
        with_vat = _first(chunks, "withVat")
        assert with_vat.meta.signature == "export function withVat(net: number, rate: number = 0.2): number"
        assert with_vat.meta.docstring == "Add VAT to a net amount."
        assert _by_symbol(chunks, "formatId").meta.signature == (
            "export const formatId = async (id: string): Promise<string> =>"
        )
        ship = _by_symbol(chunks, "MailOrder.ship")
        assert ship.text.startswith("@logged\n  ship(): void {")  # the decorator belongs to its method
        assert ship.meta.signature == "ship(): void"
        total = [c for c in chunks if c.meta.symbol == "MailOrder.total"]
        assert all(c.meta.docstring == "The sum of the order lines, VAT included." for c in total)
        header = next(c for c in chunks if c.meta.symbol == "MailOrder")
        assert header.meta.signature == "export class MailOrder implements Order"
        assert "private status: Status" in header.text

    def test_namespaces_ambient_declarations_and_anonymous_default_exports(self):
        source = (
            "namespace Geo {\n  export function area(r: number): number {\n    return r * r;\n  }\n}\n\n"
            "declare function ext(a: string): void;\n\n"
            "export default function () {\n  return 1;\n}\n"
        )
        chunks = CodeChunker(chunk_size=12, chunk_overlap=2).split(_source_doc("geo.ts", source))
        assert _definitions(chunks) == [
            ("Geo", "namespace", None),
            ("Geo.area", "function", "Geo"),
            ("ext", "function", None),
            ("default", "function", None),
        ]
        assert _first(chunks, "ext").meta.signature == "declare function ext(a: string): void;"
        assert _first(chunks, "default").meta.signature == "export default function ()"

    def test_tsx_uses_the_jsx_aware_grammar(self):
        chunks = CodeChunker().split(_doc("Badge.tsx"))
        assert _definitions(chunks) == [
            ("BadgeProps", "type", None),
            ("Badge", "function", None),
            ("EmptyBadge", "function", None),
        ]
        badge = _by_symbol(chunks, "Badge")
        assert badge.meta.signature == "export function Badge({ label, count }: BadgeProps): JSX.Element"
        assert badge.meta.docstring == "A label with a counter bubble."
        assert '<span className="badge">' in badge.text and badge.text.endswith("}")
        assert badge.meta.code_language == "typescript"

    def test_go_functions_types_and_receiver_methods(self):
        chunks = CodeChunker().split(_doc("store.go"))
        assert _definitions(chunks) == [
            ("Store", "struct", None),
            ("New", "function", None),
            ("Store.Get", "method", "Store"),
            ("Store.Set", "method", "Store"),
        ]
        get = _by_symbol(chunks, "Store.Get")
        assert get.meta.signature == "func (s *Store) Get(key string) (string, error)"
        assert get.meta.docstring == "Get returns the value of key."
        assert get.text.startswith("// Get returns the value of key.\nfunc (s *Store) Get(")
        store = _by_symbol(chunks, "Store")
        assert store.meta.docstring == "Store is a map guarded by a mutex.\nIt is safe for concurrent use."
        assert store.meta.signature == "type Store struct"
        assert _by_symbol(chunks, "Store.Set").meta.docstring is None
        assert 'var ErrMissing = errors.New("missing key")' in chunks[0].text

    def test_java_class_split_into_constructor_and_methods_with_javadoc(self):
        chunks = CodeChunker(chunk_size=40, chunk_overlap=4).split(_doc("Ledger.java"))
        assert _definitions(chunks) == [
            ("Ledger", "class", None),
            ("Ledger.Ledger", "constructor", "Ledger"),
            ("Ledger.record", "method", "Ledger"),
            ("Ledger.balance", "method", "Ledger"),
            ("Ledger.size", "method", "Ledger"),
        ]
        record = [c for c in chunks if c.meta.symbol == "Ledger.record"]
        assert record[0].text.startswith("/**\n     * Records an amount in cents.")
        assert "@Deprecated\n    public synchronized void record(long cents) {" in record[0].text
        assert all(c.meta.signature == "public synchronized void record(long cents)" for c in record)
        assert record[0].meta.docstring == (
            "Records an amount in cents.\n\n@param cents the amount; negative for a debit"
        )
        assert _by_symbol(chunks, "Ledger.balance").meta.docstring == "Current balance in cents."
        header = _by_symbol(chunks, "Ledger")
        assert header.meta.signature == "public class Ledger"
        assert header.meta.docstring == "A running list of account entries."
        assert header.text.endswith("private long balance;")
        assert chunks[0].text.startswith("package com.example.ledger;") and chunks[0].meta.symbol is None

    def test_java_enum_methods_and_nested_classes(self):
        source = (
            "enum Color {\n    RED, GREEN;\n\n"
            '    /** Hex code. */\n    String hex() {\n        return "#f00";\n    }\n\n'
            "    static class Palette {\n        void show() {}\n    }\n}\n"
        )
        chunks = CodeChunker(chunk_size=12, chunk_overlap=2).split(_source_doc("Color.java", source))
        assert _definitions(chunks) == [
            ("Color", "enum", None),
            ("Color.hex", "method", "Color"),
            ("Color.Palette", "class", "Color"),
        ]
        assert _first(chunks, "Color.hex").meta.docstring == "Hex code."

    def test_a_small_java_class_stays_one_chunk(self):
        chunks = CodeChunker().split(_doc("Ledger.java"))
        assert [c.meta.symbol for c in chunks] == [None, "Ledger"]
        assert chunks[1].text.endswith("return entries.size();\n    }\n}")


@pytest.mark.parametrize("name", ALL_FIXTURES)
@pytest.mark.parametrize("chunk_size", [12, 40, 256])
def test_offsets_are_exact_and_every_line_is_covered(name, chunk_size):
    document = _doc(name)
    chunks = CodeChunker(chunk_size=chunk_size, chunk_overlap=chunk_size // 4).split(document)
    assert_exact_and_covering(document, chunks)
    assert all(c.meta.code_language for c in chunks)


class TestFallbacks:
    def test_a_language_without_a_grammar_is_chunked_recursively(self):
        source = "# Greeter\nclass Greeter\n  def hello(name)\n    puts \"hi #{name}\"\n  end\nend\n" * 20
        document = _source_doc("greeter.rb", source)
        chunks = CodeChunker(chunk_size=50, chunk_overlap=5).split(document)
        assert len(chunks) > 1
        assert all(c.meta.code_language == "ruby" and c.meta.symbol is None for c in chunks)
        assert_exact_and_covering(document, chunks)

    def test_a_missing_grammar_package_falls_back_with_an_install_hint(self, monkeypatch, caplog):
        import ragtune.chunk.code as code_module

        monkeypatch.setitem(code_module._GRAMMARS, "go", ("tree_sitter_go_not_installed", "language", "tree-sitter-go"))
        _grammar.cache_clear()
        try:
            with caplog.at_level(logging.WARNING, logger="ragtune.chunk.code"):
                document = _doc("store.go")
                chunks = CodeChunker(chunk_size=40, chunk_overlap=4).split(document)
        finally:
            _grammar.cache_clear()
        assert all(c.meta.symbol is None and c.meta.code_language == "go" for c in chunks)
        assert_exact_and_covering(document, chunks)
        assert "pip install tree-sitter tree-sitter-go" in caplog.text

    def test_a_document_that_is_not_code_is_chunked_recursively(self):
        document = parse_markdown(b"# Title\n\nSome prose.\n\n```python\ndef f():\n    pass\n```\n", "notes.md")
        chunks = CodeChunker().split(document)
        assert [c.text for c in chunks] == [document.text]
        assert chunks[0].meta.code_language is None and chunks[0].meta.symbol is None

    def test_an_empty_file_gives_no_chunks(self):
        assert CodeChunker().split(_source_doc("empty.py", "\n\n")) == []

    def test_sizes_are_validated(self):
        with pytest.raises(ConfigError, match="chunk_overlap"):
            CodeChunker(chunk_size=32, chunk_overlap=32)
