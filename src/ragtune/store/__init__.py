"""Chunk stores: the embedded SQLite + HNSW + BM25 default, its indexes and the filter language."""

from ragtune.store.local import DocumentRecord, DocumentUpdate, LocalStore

__all__ = ["DocumentRecord", "DocumentUpdate", "LocalStore"]
