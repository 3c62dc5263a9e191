"""The retrieval pipeline: rewrite → dense ∥ BM25 (∥ graph) → weighted RRF → rerank, with per-stage timings;
mode auto lets the router choose the path."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragtune.dates import ordinal_end, question_dates
from ragtune.embed import Embedder
from ragtune.errors import ConfigError
from ragtune.guard.acl import AccessPolicy
from ragtune.retrieve.fusion import FUSIONS, document_fusion, fuse, reciprocal_rank_fusion
from ragtune.retrieve.graph import GraphSearcher, Seed
from ragtune.retrieve.rerank import Reranker
from ragtune.retrieve.rewrite import REWRITES, QueryRewriter
from ragtune.retrieve.router import Route, Router, global_question, multi_hop_pattern, split_question
from ragtune.store.base import ChunkStore
from ragtune.store.filters import matches
from ragtune.threads import Session, day_of, session_of, thread_step, window
from ragtune.timing import elapsed_ms
from ragtune.types import Hit

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("hybrid", "dense", "sparse", "graph", "auto")
# Modes that run both dense and BM25 retrieval (graph and auto add to hybrid's rankings).
_DENSE_AND_SPARSE = ("hybrid", "graph", "auto")
# How much deeper than k the graph path looks for chunks of other documents.
_SPREAD = 3
# An ordinal question ("when did they first meet?"): how many of the best fused chunks are ordered by their date.
_ORDINAL_CANDIDATES = 30
# ... of those, the ones whose fused score is at least this share of the best one's.
_ORDINAL_SHARE = 0.5
# Conversation threads (see ``thread_weight``): the documents at the top whose threads are followed, how far down
# the fused ranking they are looked for, and how many documents inside their days are read for their speakers.
_THREAD_SEEDS = 2
_THREAD_LOOKAHEAD = 30
_THREAD_CANDIDATES = 20


@dataclass
class SearchResult:
    """Hits best first, how long each stage took (milliseconds), the queries retrieved (original first) and
    any fallback taken on the way (a failed rewrite, say)."""

    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    route: Route | None = None  # mode auto: the router's decision, its signals and steps
    #: The dates the question names that ranked dated documents ("2026-09-25 (on 20260925)"); see ``date_weight``.
    dates: list[str] = field(default_factory=list)

    def describe(self, mode: str) -> dict[str, Any]:
        """How the hits were found, as JSON: the mode searched, the queries retrieved (original first), notes, and
        where they apply the router's ``route`` (mode auto) and the ``dates`` that ranked dated documents."""
        return {"mode": mode, "queries": self.queries, "notes": self.notes,
                **({"route": self.route.to_dict()} if self.route else {}),
                **({"dates": self.dates} if self.dates else {})}


class HybridRetriever:
    """The retrieval pipeline: optional query rewrite, dense and BM25 search for every query, weighted RRF,
    then an optional reranker over the best candidates.

    A retriever acts for one viewer: ``groups`` (None: unrestricted) under ``access``, the knowledge base's
    access rules. Their clause is joined to every filter before any retriever runs, so each mode, rewrite and
    reranker sees only chunks the viewer may read, and every hit is checked again after it is fetched.
    ``observer`` is told each search's result (the audit log records what was retrieved)."""

    def __init__(
        self, store: ChunkStore, embedder: Embedder, *, candidates: int = 100, dense_weight: float = 1.0,
        sparse_weight: float = 1.0, rrf_k: int = 60, fusion: str = "dbsf", rewriter: QueryRewriter | None = None,
        rewrite: str = "none",
        rewrite_weight: float = 0.5, hyde_mix: bool = True, reranker: Reranker | None = None,
        rerank_candidates: int = 50, rerank_fusion: float = 0.0, document_weight: float = 0.0,
        graph: GraphSearcher | None = None, graph_weight: float = 0.5, graph_weight_one_hop: float | None = None,
        router: Router | None = None, date_weight: float = 1.0, thread_weight: float = 0.8, thread_days: int = 2,
        order_weight: float = 1.0,
        access: AccessPolicy | None = None, groups: Iterable[str] | None = None,
        observer: Callable[[SearchResult], None] | None = None,
    ) -> None:
        if candidates <= 0:
            raise ConfigError("candidates must be greater than 0.")
        if dense_weight < 0 or sparse_weight < 0:
            raise ConfigError("dense_weight and sparse_weight must be >= 0.")
        if dense_weight + sparse_weight == 0:
            raise ConfigError("dense_weight and sparse_weight must not both be zero.")
        if rewrite not in REWRITES:
            raise ConfigError(f"unknown rewrite '{rewrite}' — choose one of: {', '.join(REWRITES)}")
        if rewrite_weight < 0:
            raise ConfigError("rewrite_weight must be >= 0.")
        if rerank_candidates <= 0:
            raise ConfigError("rerank_candidates must be greater than 0.")
        if rerank_fusion < 0:
            raise ConfigError("rerank_fusion must be >= 0.")
        if document_weight < 0:
            raise ConfigError("document_weight must be >= 0.")
        if graph_weight < 0 or (graph_weight_one_hop or 0) < 0:
            raise ConfigError("graph_weight and graph_weight_one_hop must be >= 0.")
        if date_weight < 0 or order_weight < 0:
            raise ConfigError("date_weight and order_weight must be >= 0.")
        if not 0 <= thread_weight <= 1 or thread_days < 0:
            raise ConfigError("thread_weight must be between 0 and 1, and thread_days >= 0.")
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.weights = (dense_weight, sparse_weight)
        self.rrf_k = rrf_k
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion '{fusion}' — one of {', '.join(FUSIONS)}")
        self.fusion = fusion
        self.rewriter = rewriter
        self.rewrite = rewrite
        self.rewrite_weight = rewrite_weight
        self.hyde_mix = hyde_mix
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self.rerank_fusion = rerank_fusion
        self.document_weight = document_weight
        self.graph = graph
        self.graph_weight = graph_weight
        # Mode graph on a question that shows no second hop: the walk's ranking counts for less (None: the same).
        self.graph_weight_one_hop = graph_weight if graph_weight_one_hop is None else graph_weight_one_hop
        self.router = router or Router(graph_available=graph is not None)
        self.date_weight = date_weight
        self.order_weight = order_weight
        self.thread_weight = thread_weight
        self.thread_days = thread_days
        self.access = access or AccessPolicy()
        self.groups = frozenset(groups) if groups is not None else None
        self.observer = observer

    def search(
        self, query: str, k: int = 10, *, mode: str = "hybrid", filter: dict[str, Any] | str | None = None,
        candidates: int | None = None, rewrite: str | None = None, rerank: bool | None = None,
    ) -> SearchResult:
        """The ``k`` best chunks for ``query``. Each hit's ``scores`` holds the per-retriever score and rank.

        ``rewrite`` (hyde, multi, stepback, none) and ``rerank`` (False turns the reranker off) override the
        retriever's defaults for this call.
        """
        if mode not in MODES:
            raise ConfigError(f"unknown search mode '{mode}' — choose one of: {', '.join(MODES)}")
        if mode == "graph" and self.graph is None:
            raise ConfigError("this knowledge base has no graph — run 'ragtune graph build --kb KB' (or set "
                              "graph = true before ingesting), or search with --mode hybrid")
        if k <= 0:
            raise ConfigError("k must be greater than 0.")
        if not query.strip():
            raise ConfigError("the query is empty — give some text to search for")
        rewrite = self.rewrite if rewrite is None else rewrite
        if rewrite not in REWRITES:
            raise ConfigError(f"unknown rewrite '{rewrite}' — choose one of: {', '.join(REWRITES)}")
        reranker = self.reranker if rerank is None or rerank else None
        if rerank and reranker is None:
            raise ConfigError("reranking was asked for but no reranker is configured — set rerank, e.g. "
                              "'cross-encoder:PATH' or 'llm'")
        filter = self.access.restrict(filter, self.groups)
        timings: dict[str, float] = {}
        notes: list[str] = []
        queries, passage = self._rewrite(query, rewrite, mode, timings, notes)
        pool = max(candidates or self.candidates, k)
        lists, weights, detail, vector = self._rankings(queries, passage, mode, pool, filter, timings)
        dates = self._add_dates(query, mode, vector, lists, weights, detail, pool, filter, timings, notes)
        paths: dict[int, list[str]] = {}
        route = None
        if mode == "graph":
            paths = self._add_graph(query, lists, weights, detail, pool, filter, timings)
        elif mode == "auto":
            route, paths = self._route(query, lists, weights, detail, pool, filter, timings)
        t = time.perf_counter()
        fused = self._fuse(lists, weights)
        timings["fuse"] = elapsed_ms(t, 3)
        fused = self._add_order(query, fused, lists, weights, detail, timings)
        fused, thread_paths = self._add_threads(query, mode, vector, fused, detail, pool, filter, timings)
        paths |= thread_paths
        t = time.perf_counter()
        depth = max(k, self.rerank_candidates) if reranker is not None else k
        # A multi-hop answer needs several sources: on the graph path, a wider top is spread over documents.
        spread = mode == "graph" or (route is not None and route.steps != ["hybrid"])
        top = fused[: depth * _SPREAD if spread else depth]
        timings["fuse"] += elapsed_ms(t, 3)
        t = time.perf_counter()
        records = self.store.get([i for i, _ in top])
        access = self.access.clause(self.groups)  # None: no hit to check (dumping each one's metadata costs)
        hits = []
        for chunk_id, score in top:
            hit = records.get(chunk_id)
            if hit is None:  # deleted between search and fetch
                continue
            if access is not None and not matches(access, hit.meta.model_dump()):
                # The store's filter already excluded it; a chunk re-grouped between search and fetch lands here.
                log.warning("dropped chunk %s: not readable by groups %s", hit.chunk_id, sorted(self.groups or ()))
                continue
            hit.score = float(score)
            hit.fusion = self.fusion if len(lists) > 1 else ""
            hit.path = paths.get(chunk_id, [])
            for name, ranks in detail.items():
                if chunk_id in ranks:
                    hit.scores[f"{name}_rank"] = float(ranks[chunk_id][0])
                    hit.scores[name] = float(ranks[chunk_id][1])
            hits.append(hit)
        if spread:
            hits = spread_over_documents(hits)[:depth]
        timings["fetch"] = elapsed_ms(t, 3)
        if reranker is not None and hits:
            t = time.perf_counter()
            hits = self._rerank(reranker, query, hits)[:k]
            timings["rerank"] = elapsed_ms(t, 3)
        timings["total"] = round(sum(timings.values()), 3)
        result = SearchResult(hits[:k], timings, [q for q, _ in queries] + (route.sub_queries if route else []),
                              notes, route, dates)
        if self.observer is not None:
            self.observer(result)
        return result

    def _add_order(
        self, query: str, fused: list[tuple[int, float]], lists: list[list[tuple[int, float]]], weights: list[float],
        detail: dict[str, dict[int, tuple[int, float]]], timings: dict[str, float],
    ) -> list[tuple[int, float]]:
        """For a question that asks for the first or the latest time something happened ("when did they first
        meet?", 最近一次): the best fused chunks (at least half the best score) that carry a date (``created_at``),
        ordered from that end of the time line, join the fusion as one more ranking at ``order_weight`` times the
        heaviest one. Similarity alone cannot tell the first of many alike messages from the others; among those it
        found, the date can."""
        end = ordinal_end(query) if self.order_weight > 0 and fused and fused[0][1] > 0 else None
        if end is None:
            return fused
        t = time.perf_counter()
        # Only chunks about as good as the best: in a small KB the top 30 holds everything, and the newest
        # message about something else must not come first for "the latest…".
        floor = _ORDINAL_SHARE * fused[0][1]
        top = [cid for cid, score in fused[:_ORDINAL_CANDIDATES] if score >= floor]
        found = self.store.get(top)
        dated = sorted(((d, cid) for cid in top if cid in found and (d := found[cid].meta.created_at)),
                       reverse=end == "latest")
        if len(dated) < 2:
            timings["order"] = elapsed_ms(t, 3)
            return fused
        # Scores that fall with the rank: score fusion reads the spread, rank fusion the order.
        ranking = [(cid, float(len(dated) - rank)) for rank, (_, cid) in enumerate(dated)]
        detail["order"] = {cid: (rank, score) for rank, (cid, score) in enumerate(ranking, 1)}
        lists.append(ranking)
        weights.append(self.order_weight * max(weights))
        fused = self._fuse(lists, weights)
        timings["order"] = elapsed_ms(t, 3)
        return fused

    def _fuse(self, lists: list[list[tuple[int, float]]], weights: list[float]) -> list[tuple[int, float]]:
        """The rankings fused by the retriever's method, with document aggregation when ``document_weight`` > 0."""
        if len(lists) == 1:
            return lists[0]
        if self.document_weight > 0:
            document_of = self.store.document_ids(list({i for ranking in lists for i, _ in ranking}))
            return document_fusion(lists, document_of, method=self.fusion, weights=weights, k=self.rrf_k,
                                   document_weight=self.document_weight)
        return fuse(lists, method=self.fusion, weights=weights, k=self.rrf_k)

    def _rewrite(
        self, query: str, rewrite: str, mode: str, timings: dict[str, float], notes: list[str]
    ) -> tuple[list[tuple[str, float]], str]:
        """The (query, weight) pairs to retrieve, original first, and a HyDE passage ('' when none)."""
        queries = [(query, 1.0)]
        if rewrite == "none":
            return queries, ""
        if self.rewriter is None:
            raise ConfigError(f"rewrite '{rewrite}' needs an LLM, and this retriever has none")
        if rewrite == "hyde" and mode == "sparse":
            notes.append("hyde rewrites the dense query only; sparse search used the original query")
            return queries, ""
        t = time.perf_counter()
        result = self.rewriter.rewrite(query, rewrite)
        timings["rewrite"] = elapsed_ms(t, 3)
        if result.error:
            notes.append(f"{rewrite}: {result.error}; searched with the original query")
        queries += [(q, self.rewrite_weight) for q in result.queries]
        return queries, result.passage

    def _rankings(
        self, queries: list[tuple[str, float]], passage: str, mode: str, pool: int,
        filter: dict[str, Any] | str | None, timings: dict[str, float],
    ) -> tuple[list[list[tuple[int, float]]], list[float], dict[str, dict[int, tuple[int, float]]], np.ndarray | None]:
        """One dense and/or one sparse ranking per query with its fusion weight, the original query's ranks and
        scores per retriever (for each hit's ``scores``), and its vector (None when the mode embeds nothing)."""
        lists: list[list[tuple[int, float]]] = []
        first: np.ndarray | None = None
        weights: list[float] = []
        detail: dict[str, dict[int, tuple[int, float]]] = {}
        dense_w, sparse_w = self.weights
        if mode in ("dense", *_DENSE_AND_SPARSE):
            t = time.perf_counter()
            vectors = self.embedder.encode_queries([q for q, _ in queries])
            if passage:
                hypothetical = self.embedder.encode_documents([passage])[0]
                # HyDE: the passage's embedding, averaged with the query's unless hyde_mix is off.
                mixed = vectors[0] + hypothetical if self.hyde_mix else hypothetical
                vectors[0] = mixed / max(float(np.linalg.norm(mixed)), 1e-12)
            timings["embed"] = elapsed_ms(t, 3)
            first = vectors[0]
            t = time.perf_counter()
            for n, ((_, weight), vector) in enumerate(zip(queries, vectors, strict=True)):
                ranking = self.store.dense_search(vector, pool, filter)
                lists.append(ranking)
                weights.append(dense_w * weight)
                if n == 0:
                    detail["dense"] = {cid: (rank, score) for rank, (cid, score) in enumerate(ranking, 1)}
            timings["dense"] = elapsed_ms(t, 3)
        if mode in ("sparse", *_DENSE_AND_SPARSE):
            t = time.perf_counter()
            for n, (text, weight) in enumerate(queries):
                ranking = self.store.sparse_search(text, pool, filter)
                lists.append(ranking)
                weights.append(sparse_w * weight)
                if n == 0:
                    detail["sparse"] = {cid: (rank, score) for rank, (cid, score) in enumerate(ranking, 1)}
            timings["sparse"] = elapsed_ms(t, 3)
        return lists, weights, detail, first

    def _add_dates(
        self, query: str, mode: str, vector: np.ndarray | None, lists: list[list[tuple[int, float]]],
        weights: list[float], detail: dict[str, dict[int, tuple[int, float]]], pool: int,
        filter: dict[str, Any] | None, timings: dict[str, float], notes: list[str],
    ) -> list[str]:
        """For a question that names a date ("on 20260925", "in May", "2026年5月7日"): the chunks of documents
        dated inside it (``created_at``), ranked by the mode's own retrievers, join the fusion at ``date_weight``
        times their weights. A date without a year is read in the years of the documents already found. Returns
        the dates used; a date that no document has is said in a note."""
        spans = question_dates(query) if self.date_weight > 0 else []
        if not spans:
            return []
        t = time.perf_counter()
        years: set[int] | None = None

        def years_found() -> set[int]:  # the years of the documents the question's own rankings found
            nonlocal years
            if years is None:
                found = self.store.get(list(dict.fromkeys(i for ranking in lists for i, _ in ranking)))
                years = {int(y) for hit in found.values() if (y := (hit.meta.created_at or "")[:4]).isdigit()}
            return years

        ranges = [r for span in spans for r in span.ranges(years_found() if span.year is None else ())]
        if not ranges:
            timings["dates"] = elapsed_ms(t, 3)
            return []
        marks: dict[int, tuple[int, float]] = {}
        for ranking, weight in self._search_dated(query, mode, vector, ranges, pool, filter):
            if ranking:
                lists.append(ranking)
                weights.append(weight * self.date_weight)
            for rank, (cid, _) in enumerate(ranking, 1):
                if cid not in marks or rank < marks[cid][0]:
                    marks[cid] = (rank, 1.0)
        used = [f"{span.describe()} ({span.text})" for span in spans]
        if marks:
            detail["date"] = marks
        elif years_found():  # silent where the documents carry no dates at all
            notes.append("no searchable document is dated " + ", ".join(used) + " — ranked without the date")
        timings["dates"] = elapsed_ms(t, 3)
        return used if marks else []

    def _search_dated(
        self, query: str, mode: str, vector: np.ndarray | None, ranges: list[tuple[str, str]], pool: int,
        filter: dict[str, Any] | str | None,
    ) -> list[tuple[list[tuple[int, float]], float]]:
        """The mode's own retrievers (dense with ``vector``, BM25 with ``query``) searched again inside the
        documents dated in any of ``ranges`` (``[start, end)`` ISO dates) and ``filter``: each ranking with that
        retriever's fusion weight."""
        clauses: list[dict[str, Any]] = [{"created_at": {"$gte": start, "$lt": end}} for start, end in ranges]
        dated: dict[str, Any] = clauses[0] if len(clauses) == 1 else {"$or": clauses}
        scoped = dated if filter is None else {"$and": [filter, dated]}
        dense_w, sparse_w = self.weights
        searches = []
        if vector is not None and mode != "sparse":
            searches.append((self.store.dense_search(vector, pool, scoped), dense_w))
        if mode != "dense":
            searches.append((self.store.sparse_search(query, pool, scoped), sparse_w))
        return searches

    # ------------------------------------------------------------------ graph and routing

    def _add_graph(
        self, query: str, lists: list[list[tuple[int, float]]], weights: list[float],
        detail: dict[str, dict[int, tuple[int, float]]], pool: int, filter: dict[str, Any] | str | None,
        timings: dict[str, float], seeds: list[Seed] | None = None,
    ) -> dict[int, list[str]]:
        """Append the graph walk's ranking (started from the question's entities; ``seeds``: already matched)
        to the rankings to fuse, and for a question about the whole collection the chunks its best-matching
        communities are summarised from; returns the path that led to each chunk the walk found."""
        assert self.graph is not None
        t = time.perf_counter()
        allowed = self.store.allowed_ids(filter)
        ranked = self.graph.rank(query, pool, allowed=allowed, seeds=seeds)
        ranking = ranked.ranking
        if self.fusion == "dbsf":
            # The walk's scores are visit probabilities that span orders of magnitude (the seed's own chunk far
            # ahead, the second hop a few percent of it): scaled by their spread they would leave the second hop
            # nothing. The walk enters the score fusion by its ranks.
            ranking = [(cid, 1.0 / (self.rrf_k + rank)) for rank, (cid, _) in enumerate(ranking, 1)]
        lists.append(ranking)
        whole_collection = global_question(query)
        # The router sends only multi-hop and whole-collection questions here; mode graph sends every question.
        weights.append(self.graph_weight if whole_collection or multi_hop_pattern(query) else self.graph_weight_one_hop)
        if whole_collection:
            # In their communities' order, with falling scores (equal ones would all count as a ranking's best).
            lists.append([(c, 1.0 / n) for n, c in enumerate(self.graph.community_chunks(query, allowed=allowed), 1)])
            weights.append(self.graph_weight)
        detail["graph"] = {cid: (rank, score) for rank, (cid, score) in enumerate(ranked.ranking, 1)}
        timings["graph"] = timings.get("graph", 0.0) + elapsed_ms(t, 3)
        return ranked.paths

    def _add_threads(
        self, query: str, mode: str, vector: np.ndarray | None, fused: list[tuple[int, float]],
        detail: dict[str, dict[int, tuple[int, float]]], pool: int, filter: dict[str, Any] | str | None,
        timings: dict[str, float],
    ) -> tuple[list[tuple[int, float]], dict[int, list[str]]]:
        """Follow the conversation threads of the best two documents of the fused ranking (:mod:`ragtune.threads`):
        the chunks of documents with the same speakers, dated within ``thread_days`` of one of them and found by the
        mode's own retrievers inside those days, score ``thread_weight`` times the document they continue (or
        their own score, when higher), so they come right after it. This is how a question finds the next day's
        "see you at 6:30 for the movie" when only the day before names the movie. Returns the ranking and the path
        to each chunk a thread reached (it replaces a graph path: the thread says more); the ranking is unchanged
        where the documents carry no speakers or no dates."""
        if self.thread_weight <= 0 or not fused:
            return fused, {}
        t = time.perf_counter()
        head = fused[:_THREAD_LOOKAHEAD]
        document_of = self.store.document_ids([i for i, _ in head])
        best: dict[str, tuple[int, float]] = {}  # the best documents: their best chunk and its score
        for chunk_id, score in head:
            doc = document_of.get(chunk_id)
            if doc is not None and doc not in best:
                best[doc] = (chunk_id, score)
            if len(best) == _THREAD_SEEDS:
                break
        seeds = {doc: score for doc, (_, score) in best.items()}
        # created_at is a document's, on each of its chunks: an undated document (most outside chat logs) is
        # passed over without reading its chunks for speakers.
        dated = self.store.get([chunk_id for chunk_id, _ in best.values()])
        threads = [session for doc, (chunk_id, _) in best.items()
                   if chunk_id in dated and day_of(dated[chunk_id].meta.created_at) is not None
                   and (session := session_of(doc, self.store.document_chunks(doc))).threaded]
        if not threads:
            timings["threads"] = elapsed_ms(t, 3)
            return fused, {}
        ranges = [window(thread.day, self.thread_days) for thread in threads if thread.day is not None]
        searches = [ranking for ranking, _ in self._search_dated(query, mode, vector, ranges, pool, filter)]
        # Inside those days, best first (each chunk at its better rank of the two searches); the speakers of at most
        # _THREAD_CANDIDATES documents are read.
        rank_in_days: dict[int, int] = {}
        for ranking in searches:
            for rank, (cid, _) in enumerate(ranking):
                rank_in_days[cid] = min(rank, rank_in_days.get(cid, rank))
        in_days = sorted(rank_in_days, key=lambda cid: (rank_in_days[cid], cid))
        # A session's speakers from its chunks inside those days: all of them unless the days hold more than the
        # searches return (one query, where reading each document's chunks took most of this step's time).
        found = self.store.get(in_days)
        inside: dict[str, list[Hit]] = defaultdict(list)
        for chunk_id in in_days:
            if chunk_id in found:
                inside[found[chunk_id].document_id].append(found[chunk_id])
        sessions: dict[str, Session] = {}
        paths: dict[int, list[str]] = {}
        lifted: dict[int, float] = {}
        for chunk_id in in_days:
            doc = found[chunk_id].document_id if chunk_id in found else None
            if doc is None or doc in seeds or (doc not in sessions and len(sessions) >= _THREAD_CANDIDATES):
                continue
            if doc not in sessions:
                sessions[doc] = session_of(doc, inside[doc])
            for thread in threads:
                gap = thread.apart(sessions[doc], self.thread_days)
                if gap is not None:
                    paths[chunk_id] = [f"document: {thread.source}", thread_step(gap)]
                    # In the order found inside the days, a hair apart.
                    lifted[chunk_id] = self.thread_weight * seeds[thread.document_id] * (1 - 1e-6 * len(lifted))
                    break
        if lifted:
            detail["thread"] = {cid: (rank, 1.0) for rank, cid in enumerate(lifted, 1)}
            scores = dict(fused)
            order = [cid for cid, _ in fused] + [cid for cid in lifted if cid not in scores]
            for cid, score in lifted.items():
                scores[cid] = max(score, scores.get(cid, float("-inf")))
            # A stable sort: chunks the threads did not lift keep the fusion's order among equals.
            fused = sorted(((cid, scores[cid]) for cid in order), key=lambda item: -item[1])
        timings["threads"] = elapsed_ms(t, 3)
        return fused, paths

    def _route(
        self, query: str, lists: list[list[tuple[int, float]]], weights: list[float],
        detail: dict[str, dict[int, tuple[int, float]]], pool: int, filter: dict[str, Any] | str | None,
        timings: dict[str, float],
    ) -> tuple[Route, dict[int, list[str]]]:
        """Mode auto: read the signals of the hybrid rankings, take the path the router picks, and retry
        another path once if retrieval stays weak; the router then advises refusing."""
        t = time.perf_counter()
        seeds = self.graph.seeds(query, cheap=True) if self.graph is not None else []
        signals = self._signals(query, lists, weights, seeds)
        # The reason names the parts a rule finds; an LLM is asked for sub-questions only when they are searched.
        decision, reason = self.router.decide(signals, split_question(query) if signals["multi_hop_pattern"] else [])
        route = Route(decision, reason=reason, signals=signals, steps=[decision])
        subs: list[str] = []
        timings["route"] = elapsed_ms(t, 3)
        paths: dict[int, list[str]] = {}
        tried = decision
        after = signals
        while True:
            if tried == "graph":
                # The n-gram seeds the router matched: no tagger on the question, so auto stays near hybrid's speed.
                paths = self._add_graph(query, lists, weights, detail, pool, filter, timings, seeds)
            elif tried == "decompose":
                route.sub_queries = subs
                sub_timings: dict[str, float] = {}
                # Each part counts as a rewrite of the question: the whole question keeps the most weight.
                parts = [(q, self.rewrite_weight) for q in subs]
                sub_lists, sub_weights, _, _ = self._rankings(parts, "", "hybrid", pool, filter, sub_timings)
                timings["decompose"] = round(sum(sub_timings.values()), 3)
                lists.extend(sub_lists)
                weights.extend(sub_weights)
            t = time.perf_counter()
            # Added rankings keep what hybrid found near the top, so only weak results are read again.
            if tried != "hybrid" and self.router.weak(after):
                after = self._signals(query, lists, weights, seeds)
            if not self.router.weak(after):
                break
            if len(route.steps) < 2:
                subs = self.router.sub_queries(query)
            retry = self.router.retry(tried, subs, signals) if len(route.steps) < 2 else None
            timings["route"] += elapsed_ms(t, 3)
            if retry is None:
                route.refuse = True
                route.reason += "; retrieval stayed weak" + (" after a retry" if len(route.steps) > 1 else "")
                break
            route.steps.append(retry)
            tried = retry
        route.signals = {**signals, **{f"after_{k}": v for k, v in after.items() if after[k] != signals.get(k)}}
        return route, paths

    def _signals(
        self, query: str, lists: list[list[tuple[int, float]]], weights: list[float], seeds: list[Seed]
    ) -> dict[str, Any]:
        fused = reciprocal_rank_fusion([[i for i, _ in r] for r in lists], weights=weights, k=self.rrf_k)
        top = [i for i, _ in fused[:5]]
        found = self.store.get(top)
        dense = {cid: score for cid, score in lists[0]} if lists else {}
        hits = []
        for cid in top:
            if cid in found:
                hit = found[cid]
                if cid in dense:
                    hit.scores["dense"] = float(dense[cid])
                hits.append(hit)
        named = {s.entity.id for s in seeds if s.entity.kind != "concept"}
        specific = len(self.graph.specific(seeds)) if self.graph is not None else 0
        return self.router.signals(query, hits, linked_entities=len(named), specific_entities=specific)

    def _rerank(self, reranker: Reranker, query: str, hits: list[Hit]) -> list[Hit]:
        """Rerank the first ``rerank_candidates`` hits; the rest keep their first-stage order after them.
        With ``rerank_fusion`` > 0 the reranker's order is fused with the first stage's by weighted RRF."""
        head, tail = hits[: self.rerank_candidates], hits[self.rerank_candidates :]
        first_stage = [h.chunk_id for h in head]
        ranked = reranker.rerank(query, head)
        if self.rerank_fusion > 0:
            by_id = {h.chunk_id: h for h in ranked}
            order = reciprocal_rank_fusion(
                [[h.chunk_id for h in ranked], first_stage], weights=(1.0, self.rerank_fusion), k=self.rrf_k
            )
            ranked = [by_id[cid] for cid, _ in order]
        return ranked + tail


def spread_over_documents(hits: list[Hit]) -> list[Hit]:
    """Hits reordered so that every document's best chunk comes before any document's second one (order kept
    otherwise): evidence recall@10 of LiHua-World's multi-hop questions 0.762 -> 0.783 in graph mode, single-hop
    unchanged (bench/graph_lihua.py)."""
    seen: set[str] = set()
    first: list[Hit] = []
    later: list[Hit] = []
    for hit in hits:
        (later if hit.document_id in seen else first).append(hit)
        seen.add(hit.document_id)
    return first + later
