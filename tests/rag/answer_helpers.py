"""Hits and sources for the rag unit tests, built by hand (no store, no models)."""

from __future__ import annotations

from ragtune.types import ChunkMeta, Hit


def hit(name: str, text: str, *, chunk: int = 0, heading_path: tuple[str, ...] = (), document: str | None = None,
        created_at: str | None = None) -> Hit:
    return Hit(chunk_id=f"{name}#{chunk}", document_id=document or name, source=f"/docs/{name}", text=text,
               score=1.0 - chunk / 100, meta=ChunkMeta(chunk_index=chunk, heading_path=list(heading_path),
                                                       section_title=heading_path[-1] if heading_path else None,
                                                       created_at=created_at))
