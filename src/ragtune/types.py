"""Core data types that flow through ragtune: documents, blocks, chunks and search hits."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

#: Separator placed between blocks when a document's text is assembled.
BLOCK_SEPARATOR = "\n\n"


class BlockType(str, Enum):
    """The kind of a parsed block; chunkers use it to keep tables and code intact."""

    HEADING = "heading"
    PARAGRAPH = "paragraph"
    TABLE = "table"
    CODE = "code"
    LIST = "list"
    IMAGE_TEXT = "image_text"


class Block(BaseModel):
    """A typed piece of a document, with its exact character span in ``Document.text``."""

    type: BlockType
    text: str
    page_number: int | None = None
    heading_path: list[str] = Field(default_factory=list)
    level: int | None = None  # heading level (1 = top) for HEADING blocks
    is_ocr: bool = False
    caption: str | None = None  # table caption, when the source has one
    start: int = 0
    end: int = 0


class Document(BaseModel):
    """A parsed source file: its full text and the blocks it is made of."""

    source: str
    source_type: str
    text: str
    blocks: list[Block]
    title: str | None = None
    author: str | None = None
    created_at: str | None = None
    last_modified: str | None = None
    language: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def assemble(cls, blocks: list[Block], *, source: str, source_type: str, **fields: Any) -> Document:
        """Build a document from blocks, joining their text and recording each block's offsets.

        Blocks with only whitespace are dropped; block text is stripped so offsets stay exact.
        """
        kept: list[Block] = []
        parts: list[str] = []
        pos = 0
        for block in blocks:
            text = block.text.strip()
            if not text:
                continue
            if kept:
                pos += len(BLOCK_SEPARATOR)
                parts.append(BLOCK_SEPARATOR)
            kept.append(block.model_copy(update={"text": text, "start": pos, "end": pos + len(text)}))
            parts.append(text)
            pos += len(text)
        return cls(source=source, source_type=source_type, text="".join(parts), blocks=kept, **fields)


class ChunkMeta(BaseModel):
    """Metadata carried by every chunk; the filter language addresses these fields by name."""

    source: str = ""
    source_type: str = ""
    document_id: str = ""
    chunk_index: int = 0
    page_number: int | None = None
    section_title: str | None = None
    heading_path: list[str] = Field(default_factory=list)
    author: str | None = None
    created_at: str | None = None
    last_modified: str | None = None
    word_count: int = 0
    language: str | None = None
    tags: list[str] = Field(default_factory=list)
    legal_clause_id: str | None = None
    table_caption: str | None = None
    #: For a piece of a table too long for one chunk that does not start at the table's top: the table's
    #: header row and separator line, so the piece is embedded and shown with its column names (the chunk
    #: text itself stays an exact slice of the document).
    table_header: str | None = None
    is_ocr: bool = False
    #: The title of the chunk's document (set at ingestion), for contextual chunk headers.
    document_title: str | None = None
    #: Code chunks: the programming language, the symbol's qualified name ("Class.method"), its kind
    #: ("function", "class", "method", ...), signature line, docstring, and the enclosing class/namespace.
    code_language: str | None = None
    symbol: str | None = None
    symbol_kind: str | None = None
    signature: str | None = None
    docstring: str | None = None
    parent_symbol: str | None = None
    #: Trust (guard/): the document's access groups (None: the knowledge base's ``acl_default``), why the
    #: injection scanner flagged the chunk (None: not flagged), and the kinds of personal data found in it.
    acl: list[str] | None = None
    injection: str | None = None
    pii: list[str] | None = None


class Chunk(BaseModel):
    """A retrievable span of a document: ``text == document.text[start:end]``."""

    id: str = ""
    text: str
    start: int
    end: int
    meta: ChunkMeta = Field(default_factory=ChunkMeta)

    @property
    def embedding_text(self) -> str:
        return embedding_text(self.text, self.meta)


#: What a chunk is embedded and BM25-indexed with besides its text; a knowledge base records the version its
#: chunks were made with. 0: the text (after a continued table's column names). 1: also its context header.
CHUNK_CONTEXT_VERSION = 1


def context_header(meta: ChunkMeta) -> list[str]:
    """The chunk's document title and heading path, outermost first, without repeats (a title is often also
    the first heading)."""
    parts: list[str] = []
    for part in (meta.document_title, *meta.heading_path):
        part = " ".join((part or "").split())
        if part and part not in parts:
            parts.append(part)
    return parts


def embedding_text(text: str, meta: ChunkMeta, context: int = 0) -> str:
    """What the embedder encodes for a chunk: its text, after the column names when it continues a table, and
    with ``context`` 1 after the header parts the text does not already begin with (e.g. the document title
    for every chunk but the first)."""
    if meta.table_header:
        text = f"{meta.table_header}\n{text}"
    if context >= 1:
        start = text.lstrip()[:1000]
        header = [part for part in context_header(meta) if not start.startswith(part)]
        if header:
            text = " > ".join(header) + "\n" + text
    return text


class Hit(BaseModel):
    """One search result. ``scores`` keeps each retriever's own score and rank for inspection."""

    chunk_id: str
    document_id: str
    source: str
    text: str
    score: float
    meta: ChunkMeta
    scores: dict[str, float] = Field(default_factory=dict)
    #: Graph retrieval: the steps from the question to this chunk ("question: Ada Park", "chunk UID",
    #: "entity: Lumen"); empty when the graph walk did not find it.
    path: list[str] = Field(default_factory=list)
    #: How ``score`` was fused from several retrievers' rankings ('dbsf' or 'rrf'); empty for one retriever's own.
    fusion: str = ""


class Citation(BaseModel):
    """A source the answer cites as ``[number]``, verified against the source's text."""

    number: int
    chunk_id: str
    document_id: str
    source: str
    page_number: int | None = None
    section_title: str | None = None
    snippet: str = ""
    support: float = 0.0  # how well the citing sentences are backed by the source (0–1)
    added: bool = False  # True when ragtune attributed an uncited, supported sentence to this source
    quote: str = ""  # the passage of the source that backs the citing sentence
    sections: list[str] = Field(default_factory=list)  # the document's sections the source numbers


class RemovedCitation(BaseModel):
    """A citation the model wrote that ragtune dropped, and why."""

    number: int
    sentence: str
    reason: str


class RemovedClaim(BaseModel):
    """A sentence of the generated answer that verification dropped, and why."""

    claim: str
    reason: str
    score: float = 0.0  # the judge's support score (0–1)


class SourceDocument(BaseModel):
    """One numbered source of an answer: a document, the passages of it the answer was given, and its best
    snippet (the quoted passage when cited; else the one closest to the question)."""

    number: int
    document_id: str
    source: str
    sections: list[str] = Field(default_factory=list)  # heading paths of its passages, ' › '-joined
    pages: list[int] = Field(default_factory=list)
    chunk_ids: list[str] = Field(default_factory=list)
    snippet: str = ""
    score: float = 0.0
    cited: bool = False


class Answer(BaseModel):
    """The result of asking a knowledge base a question."""

    id: str
    question: str
    answer: str
    grounded: bool
    refused: bool = False
    language: str = "en"
    query: str = ""  # the standalone query actually retrieved (after follow-up condensation)
    citations: list[Citation] = Field(default_factory=list)
    sources: list[Hit] = Field(default_factory=list)  # the numbered context, [1] first
    removed_citations: list[RemovedCitation] = Field(default_factory=list)
    model: str = ""
    timings: dict[str, float] = Field(default_factory=dict)
    #: Tokens of the generation (prompt_tokens, completion_tokens, total_tokens); empty when none ran.
    usage: dict[str, int] = Field(default_factory=dict)
    #: Why ragtune's guard refused an answer the model wrote (e.g. it followed an instruction planted in a source).
    guard: str | None = None
    #: How the answer was made: "generative" (the model's verified sentences), "extractive" (sentences quoted
    #: from the sources) or "refusal".
    mode: str = "generative"
    removed_claims: list[RemovedClaim] = Field(default_factory=list)
    #: The numbered sources grouped by document: ``documents[n - 1]`` is ``sources[n - 1]``'s document, [n].
    documents: list[SourceDocument] = Field(default_factory=list)
    #: How the sources were retrieved: the mode, the queries searched, notes, and for mode auto the router's
    #: ``route`` (decision, refusal advice, reason, signals, sub-questions, steps); see ``SearchResult.describe``.
    retrieval: dict[str, Any] = Field(default_factory=dict)
