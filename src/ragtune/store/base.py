"""The ChunkStore protocol: what every store backend (embedded, Postgres, Milvus, a plug-in) must provide."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragtune.store.local import DocumentRecord, DocumentUpdate
from ragtune.types import Hit

#: Maps a batch of chunk texts to their vectors (one row per text), as a re-embed needs them.
EncodeFn = Callable[[list[str]], np.ndarray]
#: (done, total) progress of a long store operation.
StoreProgress = Callable[[int, int], None]
#: A ranking from one retriever: (store chunk id, score) pairs, best first.
Ranking = list[tuple[int, float]]
#: A filter in the one filter language (``store/filters.py``): a dict, its JSON text, or None for everything.
FilterSpec = dict[str, Any] | str | None

__all__ = ["ChunkStore", "DocumentRecord", "DocumentUpdate", "EncodeFn", "FilterSpec", "Ranking", "StoreProgress"]


@runtime_checkable
class ChunkStore(Protocol):
    """Documents, their chunks and vectors, sparse and dense search with filters, deletions, stats and checks.

    The contract every backend keeps (``tests/store/conformance`` checks it against each one):

    - ``apply`` stores a batch of documents atomically per document: a document's old chunks are replaced by its
      new ones; a ``failed`` record keeps the last good version searchable; a ``duplicate`` record carries no
      chunks. Deleting a document whose content a duplicate shares hands its chunks to that duplicate (they take
      the heir's document-level metadata: its access groups).
    - Chunk ids in rankings are the store's integer ids; ``get`` maps them to hits (ids gone are absent).
      ``Hit.chunk_id`` is the stable ``{document}-{version}-{index}`` id, the same in every backend.
    - Filters are the one language of ``store/filters.py``, compiled for the engine with bound parameters or
      escaped literals, and select exactly what ``filters.matches`` selects on ``ChunkMeta``.
    - Sparse search is BM25 over ``store.text.tokenize`` tokens; dense search ranks by inner product of
      normalised vectors (cosine). Scores are comparable across backends within float rounding.
    """

    #: The embedder the vectors were made with, its dimension and checkpoint hash ('' when not recorded).
    embedder_name: str
    dim: int

    @property
    def directory(self) -> Path:
        """The KB's local folder (settings, caches, uploads); the data may live elsewhere."""
        ...

    @property
    def checkpoint(self) -> str: ...

    @property
    def chunk_context(self) -> int:
        """The context version the chunks were embedded and tokenised with (``types.CHUNK_CONTEXT_VERSION``)."""
        ...

    def get_meta(self, key: str) -> str | None:
        """A value the KB records (how its chunks were encoded, say); None when absent."""
        ...

    def set_meta(self, key: str, value: str) -> None: ...

    # writes
    def apply(self, updates: Sequence[DocumentUpdate]) -> None: ...

    def delete(self, document_ids: Iterable[str]) -> int: ...

    def update_meta(self, document_id: str, values: dict[str, Any]) -> bool:
        """Set document-level chunk metadata (``local.DOCUMENT_META_FIELDS``: access groups) on every chunk of a
        document and in its catalog metadata, at once for filters; False when there is no such document."""
        ...

    # catalog
    def document(self, doc_id: str) -> DocumentRecord | None: ...

    def find_by_hash(self, content_hash: str, exclude: str | None = None) -> DocumentRecord | None: ...

    def documents(self, status: str | None = None) -> list[DocumentRecord]: ...

    def write_order(self) -> list[str]:
        """Ids of the documents that have chunks, in the order their chunks were written (optional: ``kb migrate``
        copies in this order so the copy numbers chunks as the source does; without it, by URI)."""
        ...

    def count(self) -> int: ...

    def stats(self) -> dict[str, Any]: ...

    # search
    def dense_search(self, vector: np.ndarray, k: int, filter: FilterSpec = None) -> Ranking: ...

    def sparse_search(self, text: str, k: int, filter: FilterSpec = None) -> Ranking: ...

    def allowed_ids(self, filter: FilterSpec) -> set[int] | None:
        """Chunk ids that pass ``filter`` (None when there is no filter); current after any write or
        ``update_meta``, this process's or another's."""
        ...

    def get(self, ids: Sequence[int]) -> dict[int, Hit]: ...

    def document_ids(self, ids: Sequence[int]) -> dict[int, str]:
        """The document of each chunk id (ids gone are absent)."""
        ...

    def vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]: ...

    def document_chunks(self, document_id: str) -> list[Hit]: ...

    def export(self, document_ids: Sequence[str]) -> list[DocumentUpdate]:
        """Documents as stored, with their chunks (offsets, metadata, ids), vectors and BM25 tokens."""
        ...

    # maintenance
    def verify(self) -> dict[str, Any]: ...

    def rebuild_indexes(self) -> None: ...

    def reembed_pending(self) -> dict[str, Any] | None: ...

    def reembed(
        self, encode: EncodeFn, *, name: str, dim: int, checkpoint: str = "", batch_size: int = 256,
        on_progress: StoreProgress | None = None, precision: str | None = None, swap: bool = True,
    ) -> dict[str, Any]:
        """New vectors beside the live ones, batch by batch (resumable), then swapped in one step with the recorded
        embedder; with ``swap`` False only staged (``staged_vectors``) until a call with the same target."""
        ...

    def staged_vectors(self) -> tuple[list[int], np.ndarray]:
        """Chunk ids and the new vectors a re-embed in progress has computed so far."""
        ...

    def cancel_reembed(self) -> None:
        """Drop a re-embed in progress; the live vectors were never touched."""
        ...

    def save_indexes(self) -> None: ...

    def close(self) -> None: ...
