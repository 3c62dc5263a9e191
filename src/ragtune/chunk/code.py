"""Syntax-aware code chunking: one chunk per function or class, found with tree-sitter, with symbol metadata."""

from __future__ import annotations

import ast
import bisect
import functools
import importlib
import inspect
import logging
import re
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import PurePath
from typing import Any

from ragtune.chunk.base import spans_to_chunks, trim_span
from ragtune.chunk.recursive import RecursiveChunker
from ragtune.parse.code import code_language
from ragtune.tokens import TokenCounter, TokenIndex
from ragtune.types import Chunk, Document

logger = logging.getLogger(__name__)

#: Grammar used for each language: (module of its PyPI wheel, function returning the grammar, pip package).
_GRAMMARS: dict[str, tuple[str, str, str]] = {
    "python": ("tree_sitter_python", "language", "tree-sitter-python"),
    "javascript": ("tree_sitter_javascript", "language", "tree-sitter-javascript"),
    "typescript": ("tree_sitter_typescript", "language_typescript", "tree-sitter-typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx", "tree-sitter-typescript"),
    "go": ("tree_sitter_go", "language", "tree-sitter-go"),
    "java": ("tree_sitter_java", "language", "tree-sitter-java"),
}

_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class _Syntax:
    """Which node types of one grammar are definitions, and of what kind."""

    comments: frozenset[str]
    functions: dict[str, str]
    #: Definitions whose members (methods, nested classes) become chunks of their own when the whole is too large.
    containers: dict[str, str] = field(default_factory=dict)
    #: Other named definitions, kept whole (type aliases, Go types).
    others: dict[str, str] = field(default_factory=dict)
    #: Nodes wrapping one definition (``export``, Python decorators): the wrapper is the chunk, the child names it.
    wrappers: frozenset[str] = frozenset()
    #: Nodes placed before a definition that belong to it, like comments (TypeScript class-member decorators).
    prefixes: frozenset[str] = frozenset()
    #: ``const f = () => {...}``: declarations that define a function when their only value is one.
    variables: frozenset[str] = frozenset()


_JS_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})
_ANNOTATIONS = frozenset({"decorator", "annotation", "marker_annotation"})

_PYTHON = _Syntax(
    comments=frozenset({"comment"}),
    functions={"function_definition": "function"},
    containers={"class_definition": "class"},
    wrappers=frozenset({"decorated_definition"}),
)
_JAVASCRIPT = _Syntax(
    comments=frozenset({"comment"}),
    functions={
        "function_declaration": "function",
        "generator_function_declaration": "function",
        "method_definition": "method",
        # Only met as definitions inside ``export default``; elsewhere they are expressions this never visits.
        "function_expression": "function",
        "generator_function": "function",
    },
    containers={"class_declaration": "class", "class": "class"},
    wrappers=frozenset({"export_statement"}),
    prefixes=frozenset({"decorator"}),
    variables=frozenset({"lexical_declaration", "variable_declaration"}),
)
_TYPESCRIPT = _Syntax(
    comments=_JAVASCRIPT.comments,
    functions={
        **_JAVASCRIPT.functions,
        "function_signature": "function",
        "method_signature": "method",
        "abstract_method_signature": "method",
    },
    containers={
        **_JAVASCRIPT.containers,
        "abstract_class_declaration": "class",
        "interface_declaration": "interface",
        "enum_declaration": "enum",
        "internal_module": "namespace",
        "module": "namespace",
    },
    others={"type_alias_declaration": "type"},
    # ``namespace N {}`` parses as an expression statement; ``declare ...`` as an ambient declaration.
    wrappers=_JAVASCRIPT.wrappers | {"expression_statement", "ambient_declaration"},
    prefixes=_JAVASCRIPT.prefixes,
    variables=_JAVASCRIPT.variables,
)
_GO = _Syntax(
    comments=frozenset({"comment"}),
    functions={"function_declaration": "function", "method_declaration": "method"},
    others={"type_declaration": "type"},
)
_JAVA = _Syntax(
    comments=frozenset({"line_comment", "block_comment"}),
    functions={
        "method_declaration": "method",
        "constructor_declaration": "constructor",
        "compact_constructor_declaration": "constructor",
    },
    containers={
        "class_declaration": "class",
        "interface_declaration": "interface",
        "enum_declaration": "enum",
        "record_declaration": "record",
        "annotation_type_declaration": "annotation",
    },
)
_SYNTAX = {
    "python": _PYTHON,
    "javascript": _JAVASCRIPT,
    "typescript": _TYPESCRIPT,
    "tsx": _TYPESCRIPT,
    "go": _GO,
    "java": _JAVA,
}


@dataclass(frozen=True)
class _Symbol:
    """What a chunk of a definition says about it."""

    name: str
    kind: str
    signature: str | None
    docstring: str | None
    parent: str | None


@dataclass
class _Definition:
    symbol: _Symbol
    start: int  # character offsets, attached comments and decorators included
    end: int
    members: list[Any]  # child nodes of a container's body; empty for anything that is not split further


@dataclass
class _Piece:
    start: int
    end: int
    definition: _Definition | None


Span = tuple[int, int, _Symbol | None]


@functools.cache
def _grammar(language: str) -> Any | None:
    """The tree-sitter Language for ``language``, or None (with one warning) when its wheel is not installed."""
    module_name, function, package = _GRAMMARS[language]
    try:
        import tree_sitter

        module = importlib.import_module(module_name)
    except ImportError:
        logger.warning(
            "%s code is chunked line by line: tree-sitter grammar missing — run 'pip install tree-sitter %s'",
            language,
            package,
        )
        return None
    return tree_sitter.Language(getattr(module, function)())


class CodeChunker:
    """One chunk per top-level function or class; a large class is split into its methods plus its own header.

    Module-level code between definitions (imports, constants) forms chunks without a symbol, so every line of
    the file lands in a chunk. A definition larger than ``chunk_size`` tokens is split line-wise by the recursive
    chunker, each piece keeping the definition's metadata. Languages without a grammar (or files the parser
    cannot read) are chunked recursively.
    """

    def __init__(self, chunk_size: int = 256, chunk_overlap: int = 32, counter: TokenCounter | None = None) -> None:
        self._recursive = RecursiveChunker(chunk_size, chunk_overlap, counter)
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.counter = self._recursive.counter

    def split(self, document: Document) -> list[Chunk]:
        language = document.metadata.get("code_language") or code_language(document.source)
        index = TokenIndex(document.text, self.counter)
        spans = self._syntax_spans(document, language, index)
        if spans is None:
            spans = [(s, e, None) for s, e in self._split(document.text, 0, len(document.text), index)]
        return _to_chunks(document, spans, language)

    def _split(self, text: str, start: int, end: int, index: TokenIndex) -> list[tuple[int, int]]:
        return self._recursive.split_spans(text, start, end, index)

    def _syntax_spans(self, document: Document, language: str | None, index: TokenIndex) -> list[Span] | None:
        """Spans from the syntax tree, or None when there is no grammar for the file or it cannot be used."""
        grammar_name = "tsx" if PurePath(document.source).suffix.lower() == ".tsx" else language
        if grammar_name not in _GRAMMARS:
            logger.debug("%s: no grammar for language %r, chunking line by line", document.source, language)
            return None
        grammar = _grammar(grammar_name)
        if grammar is None or not document.text:
            return None
        try:
            layout = _Layout(self, document.text, index, grammar, _SYNTAX[grammar_name])
            if layout.tree.root_node.has_error:
                logger.debug("%s: syntax errors; unparsed regions are chunked as module-level code", document.source)
            return layout.spans()
        except Exception:
            # A grammar bug or an unexpected tree must cost the file its structure, never its chunks.
            logger.debug("%s: syntax chunking failed, chunking line by line", document.source, exc_info=True)
            return None


def _to_chunks(document: Document, spans: list[Span], language: str | None) -> list[Chunk]:
    kept: list[tuple[int, int, _Symbol | None]] = []
    for start, end, symbol in spans:
        start, end = trim_span(document.text, start, end)
        if start < end:
            kept.append((start, end, symbol))
    chunks = spans_to_chunks(document, [(s, e) for s, e, _ in kept])
    for chunk, (_, _, symbol) in zip(chunks, kept, strict=True):
        chunk.meta.code_language = language
        if symbol is not None:
            chunk.meta.symbol = symbol.name
            chunk.meta.symbol_kind = symbol.kind
            chunk.meta.signature = symbol.signature
            chunk.meta.docstring = symbol.docstring
            chunk.meta.parent_symbol = symbol.parent
            chunk.meta.section_title = symbol.name
    return chunks


class _Layout:
    """Walks one file's syntax tree and lays its text out as spans, each with the symbol it belongs to."""

    def __init__(self, chunker: CodeChunker, text: str, index: TokenIndex, grammar: Any, syntax: _Syntax) -> None:
        import tree_sitter

        self.chunker = chunker
        self.text = text
        self.index = index
        self.syntax = syntax
        self.source = text.encode("utf-8")
        self.tree = tree_sitter.Parser(grammar).parse(self.source)
        # tree-sitter reports UTF-8 byte offsets; chunks need character offsets.
        if len(self.source) == len(text):
            self._byte_starts: list[int] | None = None
        else:
            self._byte_starts = [0, *accumulate(len(ch.encode("utf-8")) for ch in text)]

    def spans(self) -> list[Span]:
        return self._region(self.tree.root_node.children, 0, len(self.text), None)

    # --- offsets and text -------------------------------------------------------------------------------------

    def _char(self, byte: int) -> int:
        if self._byte_starts is None:
            return byte
        return bisect.bisect_left(self._byte_starts, byte)

    def _node_text(self, node: Any) -> str:
        return self.text[self._char(node.start_byte) : self._char(node.end_byte)]

    # --- layout -----------------------------------------------------------------------------------------------

    def _region(self, nodes: list[Any], start: int, end: int, parent: _Symbol | None) -> list[Span]:
        """Spans covering text[start:end]: one piece per definition among ``nodes``, the code between them apart."""
        pieces: list[_Piece] = []
        pos = start
        for definition in self._definitions(nodes, parent):
            if definition.start > pos:
                pieces.append(_Piece(pos, definition.start, None))
            pieces.append(_Piece(definition.start, definition.end, definition))
            pos = definition.end
        if pos < end:
            pieces.append(_Piece(pos, end, None))
        pieces = self._absorb_punctuation(pieces)

        out: list[Span] = []
        for piece in pieces:
            if piece.definition is None:
                # Code between definitions belongs to the enclosing class (its header and fields), or to the module.
                out.extend((s, e, parent) for s, e in self._split(piece.start, piece.end))
            else:
                out.extend(self._definition_spans(piece.definition, piece.start, piece.end))
        return out

    def _absorb_punctuation(self, pieces: list[_Piece]) -> list[_Piece]:
        # A gap with no word in it (a class's closing brace, a stray ';') is not worth a chunk of its own.
        kept: list[_Piece] = []
        for piece in pieces:
            if piece.definition is None and not _WORD.search(self.text, piece.start, piece.end) and kept:
                kept[-1].end = piece.end
            else:
                kept.append(piece)
        if len(kept) > 1 and kept[0].definition is None and not _WORD.search(self.text, kept[0].start, kept[0].end):
            kept[1].start = kept[0].start
            kept.pop(0)
        return kept

    def _definition_spans(self, definition: _Definition, start: int, end: int) -> list[Span]:
        if self.index.count(start, end) <= self.chunker.chunk_size:
            return [(start, end, definition.symbol)]
        if definition.members:
            spans = self._region(definition.members, start, end, definition.symbol)
            if any(symbol is not definition.symbol for _, _, symbol in spans):
                return spans
        return [(s, e, definition.symbol) for s, e in self._split(start, end)]

    def _split(self, start: int, end: int) -> list[tuple[int, int]]:
        return self.chunker._split(self.text, start, end, self.index)

    # --- definitions ------------------------------------------------------------------------------------------

    def _definitions(self, nodes: list[Any], parent: _Symbol | None) -> list[_Definition]:
        found: list[_Definition] = []
        for i, node in enumerate(nodes):
            definition = self._definition(node, parent)
            if definition is None:
                continue
            prefix = self._attached_prefix(nodes, i)
            if prefix:
                definition.start = self._char(prefix[0].start_byte)
                if definition.symbol.docstring is None:
                    comments = [self._node_text(n) for n in prefix if n.type in self.syntax.comments]
                    definition.symbol = replace(definition.symbol, docstring=_comment_docstring(comments))
            definition.end = self._trailing_comment_end(nodes, i, definition.end)
            found.append(definition)
        return found

    def _attached_prefix(self, nodes: list[Any], i: int) -> list[Any]:
        """Comments and decorators directly above ``nodes[i]`` (no blank line between), each on its own line."""
        attachable = self.syntax.comments | self.syntax.prefixes
        start = self._char(nodes[i].start_byte)
        first = i
        for j in range(i - 1, -1, -1):
            node = nodes[j]
            if node.type not in attachable:
                break
            node_start, node_end = self._char(node.start_byte), self._char(node.end_byte)
            between = self.text[node_end:start]
            line_start = self.text.rfind("\n", 0, node_start) + 1
            if between.strip() or between.count("\n") > 1 or self.text[line_start:node_start].strip():
                break
            first, start = j, node_start
        return nodes[first:i]

    def _trailing_comment_end(self, nodes: list[Any], i: int, end: int) -> int:
        """A comment on the same line right after a definition belongs to it."""
        if i + 1 < len(nodes) and nodes[i + 1].type in self.syntax.comments:
            comment_start = self._char(nodes[i + 1].start_byte)
            if "\n" not in self.text[end:comment_start]:
                return self._char(nodes[i + 1].end_byte)
        return end

    def _definition(self, node: Any, parent: _Symbol | None) -> _Definition | None:
        syntax = self.syntax
        inner = node
        if node.type in syntax.wrappers:
            inner = next((c for c in node.named_children if self._is_definition_type(c.type)), None)
            if inner is None:
                return None
        if inner.type in syntax.variables:
            return self._variable_function(node, inner, parent)
        if inner.type in syntax.functions:
            kind = syntax.functions[inner.type]
            if kind == "function" and parent is not None and parent.kind in {"class", "interface"}:
                kind = "method"
            return self._make(node, inner, kind, inner.child_by_field_name("body"), parent, members=False)
        if inner.type in syntax.containers:
            return self._make(
                node, inner, syntax.containers[inner.type], inner.child_by_field_name("body"), parent, members=True
            )
        if inner.type in syntax.others:
            return self._make(node, inner, syntax.others[inner.type], None, parent, members=False)
        return None

    def _is_definition_type(self, node_type: str) -> bool:
        s = self.syntax
        return any(node_type in group for group in (s.functions, s.containers, s.others, s.variables))

    def _variable_function(self, node: Any, inner: Any, parent: _Symbol | None) -> _Definition | None:
        declarators = [c for c in inner.named_children if c.type == "variable_declarator"]
        if len(declarators) != 1:
            return None
        value = declarators[0].child_by_field_name("value")
        if value is None or value.type not in _JS_FUNCTION_VALUES:
            return None
        name = self._node_text(declarators[0].child_by_field_name("name"))
        return self._make(node, inner, "function", value.child_by_field_name("body"), parent, False, name=name)

    def _make(
        self,
        node: Any,
        inner: Any,
        kind: str,
        body: Any | None,
        parent: _Symbol | None,
        members: bool,
        name: str | None = None,
    ) -> _Definition | None:
        parent_name = parent.name if parent else None
        if name is None:
            name, kind, parent_name = self._name(node, inner, kind, parent_name)
        if not name:
            return None
        symbol = _Symbol(
            name=f"{parent_name}.{name}" if parent_name else name,
            kind=kind,
            signature=self._signature(node, inner, body),
            docstring=self._python_docstring(body) if self.syntax is _PYTHON else None,
            parent=parent_name,
        )
        member_nodes: list[Any] = []
        if members and body is not None:
            for child in body.children:
                # Java enums keep their methods one level down, after the constants.
                member_nodes.extend(child.children if child.type == "enum_body_declarations" else [child])
        return _Definition(symbol, self._char(node.start_byte), self._char(node.end_byte), member_nodes)

    def _name(self, node: Any, inner: Any, kind: str, parent: str | None) -> tuple[str | None, str, str | None]:
        """The definition's own name, its kind refined where the name tells more, and its enclosing symbol."""
        if inner.type == "type_declaration":  # Go: ``type S struct {...}``; a grouped ``type (...)`` stays unnamed
            specs = [c for c in inner.named_children if c.type in {"type_spec", "type_alias"}]
            if len(specs) != 1:
                return None, kind, parent
            shape = specs[0].child_by_field_name("type")
            refined = {"struct_type": "struct", "interface_type": "interface"}.get(shape.type if shape else "", kind)
            return self._node_text(specs[0].child_by_field_name("name")), refined, parent
        name_node = inner.child_by_field_name("name")
        if inner.type == "method_declaration" and self.syntax is _GO:
            receiver = inner.child_by_field_name("receiver")
            type_name = _first_descendant(receiver, "type_identifier") if receiver else None
            if type_name is not None:
                parent = self._node_text(type_name)
        if name_node is None:
            # ``export default function () {}`` has no name of its own; it is imported as ``default``.
            return ("default" if node.type == "export_statement" else None), kind, parent
        return self._node_text(name_node), kind, parent

    def _signature(self, node: Any, inner: Any, body: Any | None) -> str | None:
        start = _signature_start(node, self.syntax)
        if start is None:
            return None
        if body is not None and body.start_byte > start:
            end = body.start_byte
            if self.syntax is _PYTHON:
                # Stop at the ':' so a comment after it is not part of the signature.
                colons = [c.end_byte for c in inner.children if c.type == ":" and c.end_byte <= body.start_byte]
                end = colons[-1] if colons else end
        else:
            # No body to stop at (a type alias, a Go type): the first line, without an opening brace.
            newline = self.source.find(b"\n", start, node.end_byte)
            end = node.end_byte if newline < 0 else newline
        signature = self.text[self._char(start) : self._char(end)].strip().removesuffix("{").rstrip()
        return signature or None

    def _python_docstring(self, body: Any | None) -> str | None:
        if body is None:
            return None
        first = next((c for c in body.named_children if c.type not in self.syntax.comments), None)
        if first is None or first.type != "expression_statement" or first.named_child_count != 1:
            return None
        literal = first.named_children[0]
        if literal.type != "string":
            return None
        raw = self._node_text(literal)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return None
        return (inspect.cleandoc(value) or None) if isinstance(value, str) else None


def _signature_start(node: Any, syntax: _Syntax) -> int | None:
    """Byte where the signature begins: the first token that is not a decorator, annotation or comment."""
    for child in node.children:
        if child.type in _ANNOTATIONS or child.type in syntax.comments or child.type in syntax.prefixes:
            continue
        if child.type in syntax.wrappers or child.type == "modifiers":
            inner = _signature_start(child, syntax)
            if inner is not None:
                return inner
            continue
        return int(child.start_byte)
    return None


def _first_descendant(node: Any, node_type: str) -> Any | None:
    if node.type == node_type:
        return node
    for child in node.named_children:
        found = _first_descendant(child, node_type)
        if found is not None:
            return found
    return None


_COMMENT_MARKERS = re.compile(r"^\s*(?:/\*\*?|\*(?!/)|///?|#+)\s?")


def _comment_docstring(texts: list[str]) -> str | None:
    """The doc comment among the comments above a definition: the last ``/** */`` block, else all of them."""
    doc_blocks = [t for t in texts if t.startswith("/**")]
    chosen = doc_blocks[-1:] if doc_blocks else texts
    lines: list[str] = []
    for text in chosen:
        body = text.removesuffix("*/") if text.startswith("/*") else text
        lines.extend(_COMMENT_MARKERS.sub("", line, count=1).rstrip() for line in body.splitlines())
    docstring = inspect.cleandoc("\n".join(lines))
    return docstring or None
