"""Graph retrieval: seed entities from the question, a personalised PageRank walk over chunk–entity edges."""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ragtune.errors import ConfigError
from ragtune.graph import Entity, KnowledgeGraph, entity_key, load_communities
from ragtune.store.text import tokenize
from ragtune.text import HAN_RE

log = logging.getLogger(__name__)

_WORD_RE = re.compile(r"[\w'’-]+")
_POSSESSIVE_RE = re.compile(r"['’]s$")
# How much a seed found each way is trusted: the question names it, a spelling close to it, a part of it.
_MATCH_WEIGHTS = {"exact": 1.0, "fuzzy": 0.7, "partial": 0.6}


@dataclass(frozen=True)
class Seed:
    """An entity the question refers to, how it was matched, the words that matched, and its walk weight."""

    entity: Entity
    match: str
    text: str
    weight: float


@dataclass
class GraphRanking:
    """Chunks reached by the walk (best first, chunk id and score), the path that led to each, the seeds."""

    ranking: list[tuple[int, float]] = field(default_factory=list)
    paths: dict[int, list[str]] = field(default_factory=dict)
    seeds: list[Seed] = field(default_factory=list)


class GraphSearcher:
    """Ranks chunks by a personalised PageRank over the chunk–entity graph, restarted at the question's
    entities (matched exactly, by a close spelling, or as part of a longer name), rarer ones weighing more.
    The walk stays inside the chunks a filter allows.

    Bounded: it starts from the specific seeds (in at most ``seed_share`` of the chunks, or ``min_specific``),
    goes to their chunks, to the entities there rare enough to link two things (at most ``bridge_share`` of the
    chunks; ``max_bridges`` of them), and to those entities' chunks — two hops from the question. Common seeds
    (up to ``max_entity_chunks`` chunks) only add weight to chunks already reached. At most ``max_results``
    chunks are ranked: the graph adds a few connected chunks to what dense and BM25 found, not a second list of
    everything that mentions a person."""

    def __init__(
        self, graph: KnowledgeGraph, *, damping: float = 0.5, seed_share: float = 0.01, min_specific: int = 5,
        max_entity_chunks: int = 200, bridge_share: float = 0.02, max_bridges: int = 64, bridge_chunks: int = 50,
        max_results: int = 20, fuzzy_score: float = 88.0, iterations: int = 30,
    ) -> None:
        if not 0 < damping < 1:
            raise ConfigError("damping must be between 0 and 1.")
        if min(max_entity_chunks, bridge_chunks, max_results, min_specific) <= 0 or max_bridges < 0:
            raise ConfigError("max_bridges must be >= 0; min_specific, max_entity_chunks, bridge_chunks and "
                              "max_results must be greater than 0.")
        self.graph = graph
        self.damping = damping
        self.seed_share = seed_share
        self.min_specific = min_specific
        self.max_results = max_results
        self.max_entity_chunks = max_entity_chunks
        self.bridge_share = bridge_share
        self.max_bridges = max_bridges
        self.bridge_chunks = bridge_chunks
        self.fuzzy_score = fuzzy_score
        self.iterations = iterations
        self._names: tuple[tuple[int, int], list[Entity], list[str]] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ seeds

    def seeds(self, query: str, *, cheap: bool = False) -> list[Seed]:
        """The graph's entities the question refers to, strongest first (one seed per entity). ``cheap`` looks up
        the question's word n-grams only (no tagger, no fuzzy match): what the router reads on every question."""
        mentions = [] if cheap else self.graph.extractor.extract_one(query)
        found: dict[int, Seed] = {}
        texts: dict[str, str] = {}  # key -> words of the question
        for mention in mentions:
            texts.setdefault(mention.key, mention.name)
        for key, ngram in _ngram_keys(query).items():
            texts.setdefault(key, ngram)
        total = max(self.graph.chunk_total(), 1)
        for key, entity in self.graph.by_keys(texts).items():
            found[entity.id] = Seed(entity, "exact", texts[key], _idf(entity, total))
        matched = {s.text.lower() for s in found.values()}
        for mention in mentions:
            if mention.kind == "concept" or mention.key in texts and self._has(found, mention.key):
                continue
            if any(mention.name.lower() in m or m in mention.name.lower() for m in matched):
                continue
            for entity, how in self._close(mention.key):
                if entity.id not in found:
                    found[entity.id] = Seed(entity, how, mention.name, _idf(entity, total) * _MATCH_WEIGHTS[how])
        return sorted(found.values(), key=lambda s: (-s.weight, s.entity.id))

    @staticmethod
    def _has(found: dict[int, Seed], key: str) -> bool:
        return any(s.entity.key == key for s in found.values())

    def _close(self, key: str) -> list[tuple[Entity, str]]:
        """Entities spelled like ``key`` (fuzzy) or whose key starts or ends with it ("wolfgang" ~ Wolfgang Schulz)."""
        from rapidfuzz import fuzz, process

        entities, keys = self._name_index()
        out: list[tuple[Entity, str]] = []
        if len(key) >= 4:
            for _, _, index in process.extract(key, keys, scorer=fuzz.ratio, limit=3, score_cutoff=self.fuzzy_score):
                out.append((entities[index], "fuzzy"))
            if len(key) >= 4 and not HAN_RE.search(key):
                partial = [e for e in entities if e.key != key and (e.key.startswith(key) or e.key.endswith(key))]
                out.extend((e, "partial") for e in sorted(partial, key=lambda e: -e.chunks)[:3])
        return out

    def _name_index(self) -> tuple[list[Entity], list[str]]:
        version = self.graph.version()
        with self._lock:
            if self._names is None or self._names[0] != version:
                entities = self.graph.names()
                self._names = (version, entities, [e.key for e in entities])
            return self._names[1], self._names[2]

    # ------------------------------------------------------------------ the walk

    def rank(self, query: str, k: int, *, allowed: set[int] | None = None, seeds: list[Seed] | None = None
             ) -> GraphRanking:
        """Up to ``k`` chunks by walk score (at most ``max_results``); ``allowed``: the chunk ids a filter lets
        through (None: all). Empty when the question names nothing specific: a walk from common entities only
        (the author of every message, a topic of every chunk) would rank chunks at random."""
        # One read transaction for the walk's queries: a consistent snapshot, and one BEGIN instead of seven.
        with self.graph.store.read():
            return self._rank(query, k, allowed, self.seeds(query) if seeds is None else seeds)

    def _rank(self, query: str, k: int, allowed: set[int] | None, seeds: list[Seed]) -> GraphRanking:
        total = max(self.graph.chunk_total(), 1)
        specific = self.specific(seeds, total)
        common = [s for s in seeds if s not in specific and s.entity.chunks <= self.max_entity_chunks]
        if not specific:
            return GraphRanking(seeds=seeds)

        def visible(chunk_id: int) -> bool:
            return allowed is None or chunk_id in allowed

        # Hop 1: the specific seeds' chunks. Hop 2: entities there rare enough to link two things, and their chunks.
        edges: dict[tuple[int, int], float] = {}  # (chunk, entity) -> mention weight
        for entity_id, chunk_id, weight in self.graph.chunks_of([s.entity.id for s in specific],
                                                                 limit=self.max_entity_chunks):
            if visible(chunk_id):
                edges[(chunk_id, entity_id)] = weight
        hop1 = sorted({c for c, _ in edges})
        starts = {s.entity.id for s in specific}
        bridge_cap = max(math.floor(self.bridge_share * total), 3)
        candidates: dict[int, float] = defaultdict(float)
        for chunk_id, entity_id, weight in self.graph.entities_of(hop1):
            edges[(chunk_id, entity_id)] = weight
            if entity_id not in starts:
                candidates[entity_id] += weight
        entities = self.graph.by_ids(candidates)
        bridges = sorted(
            (e for e in candidates if e in entities and 2 <= entities[e].chunks <= bridge_cap),
            key=lambda e: (-candidates[e] * _idf(entities[e], total), e),
        )[: self.max_bridges]
        hop2 = set()
        for entity_id, chunk_id, weight in self.graph.chunks_of(bridges, limit=self.bridge_chunks):
            if visible(chunk_id):
                edges[(chunk_id, entity_id)] = weight
                hop2.add(chunk_id)
        # Common seeds are not walked from, but a chunk that also mentions one is the likelier answer.
        common_ids = {s.entity.id for s in common}
        for chunk_id, entity_id, weight in self.graph.entities_of(sorted(hop2 - set(hop1))):
            if entity_id in common_ids:
                edges[(chunk_id, entity_id)] = weight
        keep = starts | common_ids | set(bridges)
        edges = {(c, e): w for (c, e), w in edges.items() if e in keep}
        if not edges:
            return GraphRanking(seeds=seeds)
        entities.update({s.entity.id: s.entity for s in seeds})
        scores, parents = self._walk(edges, [*specific, *common], entities, total)
        ranking = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[: min(k, self.max_results)]
        return GraphRanking(ranking, self._paths([c for c, _ in ranking], parents, entities, seeds), seeds)

    def specific(self, seeds: list[Seed], total: int | None = None) -> list[Seed]:
        """The seeds rare enough to start a walk from (in at most ``seed_share`` of the chunks, or ``min_specific``)."""
        total = max(self.graph.chunk_total(), 1) if total is None else total
        cap = max(self.min_specific, math.floor(self.seed_share * total))
        return [s for s in seeds if s.entity.chunks <= cap]

    def _walk(
        self, edges: dict[tuple[int, int], float], seeds: list[Seed], entities: dict[int, Entity], total: int,
    ) -> tuple[dict[int, float], dict[str, tuple[str, int]]]:
        """Personalised PageRank on the bipartite subgraph; returns chunk scores and, per node, the neighbour
        that sent it the most (for paths)."""
        chunks = sorted({c for c, _ in edges})
        ents = sorted({e for _, e in edges})
        nodes = [("c", c) for c in chunks] + [("e", e) for e in ents]
        index = {node: i for i, node in enumerate(nodes)}
        n = len(nodes)
        # Edge arrays in both directions; plain numpy (bincount) beats building scipy matrices at this size.
        pairs = [(index[("c", c)], index[("e", e)],
                  weight * _idf(entities[e], total) if e in entities else weight)  # rare entities carry more
                 for (c, e), weight in edges.items()]
        a, b, w = (np.array(column, dtype=np.float64) for column in zip(*pairs, strict=True))
        src = np.concatenate([a, b]).astype(np.int64)
        dst = np.concatenate([b, a]).astype(np.int64)
        weight = np.concatenate([w, w])
        out = np.bincount(src, weights=weight, minlength=n)
        step = weight / out[src]
        restart = np.zeros(n)
        for s in seeds:
            if ("e", s.entity.id) in index:
                restart[index[("e", s.entity.id)]] += s.weight
        restart /= max(restart.sum(), 1e-12)
        score = restart.copy()
        for _ in range(self.iterations):
            score = (1 - self.damping) * restart + self.damping * np.bincount(dst, weights=step * score[src],
                                                                              minlength=n)
        # Paths: each node's parent is the neighbour that sent it the most.
        sent = step * score[src]
        order = np.lexsort((-sent, dst))  # by receiving node, the largest sender first
        first = np.ones(len(order), dtype=bool)
        first[1:] = dst[order][1:] != dst[order][:-1]
        parents: dict[str, tuple[str, int]] = {}
        for edge in order[first]:
            j = int(dst[edge])
            if restart[j] == 0 and sent[edge] > 0:
                node = nodes[j]
                parents[f"{node[0]}{node[1]}"] = nodes[int(src[edge])]
        return {c: float(score[index[("c", c)]]) for c in chunks}, parents

    def _paths(
        self, ranked: list[int], parents: dict[str, tuple[str, int]], entities: dict[int, Entity], seeds: list[Seed],
    ) -> dict[int, list[str]]:
        """For each ranked chunk, the steps from the question to it: "question: NAME", "chunk UID",
        "entity: NAME", ..."""
        seed_ids = {s.entity.id for s in seeds}
        hops: dict[int, list[tuple[str, int]]] = {}
        for chunk_id in ranked:
            steps: list[tuple[str, int]] = []
            node: tuple[str, int] = ("c", chunk_id)
            while f"{node[0]}{node[1]}" in parents and len(steps) < 6:
                node = parents[f"{node[0]}{node[1]}"]
                if node in steps or node == ("c", chunk_id):
                    break
                steps.append(node)
            hops[chunk_id] = list(reversed(steps))
        uids = self.graph.chunk_uids([n for steps in hops.values() for kind, n in steps if kind == "c"])
        paths: dict[int, list[str]] = {}
        for chunk_id, steps in hops.items():
            words: list[str] = []
            for kind, node_id in steps:
                if kind == "e":
                    name = entities[node_id].name if node_id in entities else str(node_id)
                    words.append(f"{'question' if node_id in seed_ids else 'entity'}: {name}")
                else:
                    words.append(f"chunk {uids.get(node_id, node_id)}")
            paths[chunk_id] = words
        return paths

    # ------------------------------------------------------------------ global questions

    def community_chunks(self, query: str, k: int = 3, *, allowed: set[int] | None = None) -> list[int]:
        """Representative chunks of the communities whose names and summaries share most terms with the
        question (for "what are the main ..." questions); empty when no communities were built."""
        terms = set(tokenize(query))
        scored = []
        for community in load_communities(self.graph):
            words = set(tokenize(" ".join(community.names) + " " + community.summary))
            overlap = len(terms & words)
            if overlap:
                scored.append((overlap * math.log(1 + community.size), community.id, community.chunks))
        scored.sort(key=lambda item: (-item[0], item[1]))
        out: list[int] = []
        for _, _, chunks in scored[:k]:
            out.extend(c for c in chunks if (allowed is None or c in allowed) and c not in out)
        return out


def _idf(entity: Entity, total: int) -> float:
    return math.log(1 + total / max(entity.chunks, 1))


def _ngram_keys(text: str, longest: int = 4) -> dict[str, str]:
    """The keys the question's word n-grams would have as entities, with the words: as a name when the n-gram
    starts with a capital or a digit (lower-case words are no names: "may" finds no person), and as a noun phrase.
    Computed from each word once, as ``entity_key`` would (the router reads this on every question)."""
    keys: dict[str, str] = {}
    if HAN_RE.search(text):
        # Chinese: jieba's words and their runs.
        words = tokenize(text)
        for n in range(1, longest + 1):
            for i in range(len(words) - n + 1):
                gram = ("" if HAN_RE.search(words[i]) else " ").join(words[i : i + n])
                for kind in ("name", "concept"):
                    key = entity_key(gram, kind)
                    if key:
                        keys.setdefault(key, gram)
        return keys
    words = _WORD_RE.findall(unicodedata.normalize("NFKC", text))
    forms = []
    for word in words:
        bare = _POSSESSIVE_RE.sub("", word.casefold())
        forms.append((re.sub(r"[\W_]", "", bare), " ".join(tokenize(bare)), word[:1].isupper() or word[:1].isdigit()))
    for n in range(1, longest + 1):
        for i in range(len(words) - n + 1):
            span = forms[i : i + n]
            gram = " ".join(words[i : i + n])
            name = "".join(f[0] for f in span)
            if span[0][2] and len(name) >= 2 and not name.isdigit():
                keys.setdefault(name, gram)
            concept = " ".join(f[1] for f in span if f[1])
            if concept:
                keys.setdefault(concept, gram)
    return keys
