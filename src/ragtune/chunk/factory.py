"""Chooses a chunker by name, or by source type and content when the name is 'auto'."""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache
from typing import TYPE_CHECKING, Any

from ragtune.chunk.base import Chunker
from ragtune.errors import ConfigError
from ragtune.tokens import TokenCounter
from ragtune.types import Document

if TYPE_CHECKING:
    from ragtune.embed.base import Embedder

#: Strategy name -> "module:Class". Classes are imported on first use: some strategies live in modules
#: with heavy optional dependencies (tree-sitter for code), and a missing one must not break the others.
CHUNKERS: dict[str, str] = {
    "token": "ragtune.chunk.token:TokenChunker",
    "recursive": "ragtune.chunk.recursive:RecursiveChunker",
    "markdown": "ragtune.chunk.markdown:MarkdownChunker",
    "slide": "ragtune.chunk.markdown:SlideChunker",
    "table": "ragtune.chunk.markdown:TableChunker",
    "semantic": "ragtune.chunk.semantic:SemanticChunker",
    "legal": "ragtune.chunk.legal:LegalChunker",
    "paper": "ragtune.chunk.paper:PaperChunker",
    "code": "ragtune.chunk.code:CodeChunker",
    "qa": "ragtune.chunk.qa:QAChunker",
}
# Strategies that compare meanings and so take the knowledge base's embedder.
_NEEDS_EMBEDDER = frozenset({"semantic"})

# What 'auto' picks from the source type alone. Heading-structured formats keep sections apart; slides and
# spreadsheets keep a slide or a table's rows together.
_BY_SOURCE_TYPE = {
    "md": "markdown", "markdown": "markdown", "html": "markdown", "htm": "markdown", "epub": "markdown",
    "docx": "markdown", "pptx": "slide", "xlsx": "table", "xls": "table", "csv": "table", "tsv": "table",
    "qa": "qa", "faq": "qa",
}
_CODE_SOURCE_TYPES = frozenset({
    "code", "py", "pyi", "js", "jsx", "mjs", "ts", "tsx", "java", "kt", "scala", "go", "rs", "c", "h", "cc", "cpp",
    "cxx", "hpp", "cs", "rb", "php", "swift", "m", "sh", "bash", "lua", "r", "sql", "dart", "vue",
})
# Types whose structure says little about the content: plain text, PDF and Word files may hold a statute
# or a paper, so 'auto' looks inside them.
_SNIFFED_SOURCE_TYPES = frozenset({"txt", "text", "pdf", "docx", "doc", "rtf", "odt"})
#: Article markers at line starts that make a text a legal one for 'auto'.
LEGAL_MARKER_THRESHOLD = 3
# Legal texts number their articles from the start; reading further only costs time on long files.
_LEGAL_SNIFF_CHARS = 200_000


def chunker_name_for(name: str, source_type: str, document: Document | None = None) -> str:
    """Resolve 'auto' to the strategy that suits ``source_type`` (and, given the document, its content).

    By type: Markdown, HTML, EPUB and DOCX -> markdown; PPTX -> slide; XLSX/CSV -> table; source code ->
    code; Q&A files -> qa. Plain text, PDF and DOCX with at least three article markers at line starts
    (第X条, Article N, Section N, § N) -> legal; with Abstract and Introduction or References sections ->
    paper; everything else -> recursive. A strategy whose module is not installed falls back to recursive.
    """
    if name != "auto":
        if name not in CHUNKERS:
            raise ConfigError(f"unknown chunker '{name}' — choose one of: auto, {', '.join(CHUNKERS)}")
        return name
    source_type = source_type.lower().lstrip(".")
    if source_type in _CODE_SOURCE_TYPES:
        picked = "code"
    else:
        picked = _BY_SOURCE_TYPE.get(source_type, "recursive")
        if document is not None and source_type in _SNIFFED_SOURCE_TYPES:
            picked = _sniff(document) or picked
    return picked if _available(picked) else "recursive"


def make_chunker(
    name: str,
    *,
    chunk_size: int,
    chunk_overlap: int,
    counter: TokenCounter | None = None,
    embedder: Embedder | None = None,
) -> Chunker:
    """A chunker instance for a resolved strategy name; ``embedder`` is used by the semantic strategy."""
    cls = chunker_class(name)
    kwargs: dict[str, Any] = {"embedder": embedder} if name in _NEEDS_EMBEDDER else {}
    chunker: Chunker = cls(chunk_size=chunk_size, chunk_overlap=chunk_overlap, counter=counter, **kwargs)
    return chunker


def chunker_class(name: str) -> Any:
    """The class behind a strategy name, imported now."""
    if name not in CHUNKERS:
        raise ConfigError(f"unknown chunker '{name}' — choose one of: auto, {', '.join(CHUNKERS)}")
    module_name, _, class_name = CHUNKERS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise ConfigError(
                f"chunker '{name}' needs the package '{exc.name}', which is not installed — install it or "
                "choose another chunker"
            ) from exc
        raise ConfigError(f"chunker '{name}' is not available in this ragtune ({module_name} is missing)") from exc
    return getattr(module, class_name)


@cache
def _available(name: str) -> bool:
    module_name = CHUNKERS[name].partition(":")[0]
    return importlib.util.find_spec(module_name) is not None


def _sniff(document: Document) -> str | None:
    from ragtune.chunk.legal import count_clause_markers
    from ragtune.chunk.paper import looks_like_paper

    if looks_like_paper(document.text):
        return "paper"
    sample = document.text[:_LEGAL_SNIFF_CHARS]
    if count_clause_markers(sample, limit=LEGAL_MARKER_THRESHOLD) >= LEGAL_MARKER_THRESHOLD:
        return "legal"
    return None
