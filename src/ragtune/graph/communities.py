"""Communities of entities (networkx Louvain over co-occurrence) with extractive summaries, for global questions."""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from ragtune.graph.store import KnowledgeGraph
from ragtune.text import sentences

log = logging.getLogger(__name__)

# Noun phrases are topics shared by unrelated things; communities are made of names, codes and places.
_COMMUNITY_KINDS = ("person", "org", "place", "thing", "name", "code")
_SUMMARY_CHARS = 400


@dataclass(frozen=True)
class Community:
    """A group of entities that are mentioned together, its best-connected names, the chunks that mention
    most of it, and a summary quoted from those chunks."""

    id: int
    size: int
    entities: list[int]
    names: list[str]
    chunks: list[int]
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "names": self.names, "summary": self.summary}


def build_communities(
    graph: KnowledgeGraph, *, resolution: float = 1.0, min_size: int = 3, max_share: float = 0.05, seed: int = 0,
) -> dict[str, Any]:
    """Detect communities with Louvain (networkx) on the co-occurrence graph of entities in at least two chunks
    and at most ``max_share`` of them (hubs such as the author of every message would join everything), write
    them with their summaries, and record which graph they were made of. Deterministic for a given ``seed``."""
    import networkx as nx

    started = time.perf_counter()
    fingerprint = graph.fingerprint()
    total = max(graph.chunk_total(), 1)
    g = nx.Graph()
    for a, b, weight in graph.cooccurrence(min_chunks=2, max_share=max_share, kinds=_COMMUNITY_KINDS):
        g.add_edge(a, b, weight=weight)
    groups = nx.community.louvain_communities(g, weight="weight", resolution=resolution, seed=seed) if g else []
    groups = sorted((sorted(c) for c in groups if len(c) >= min_size), key=lambda c: (-len(c), c[0]))
    entities = graph.by_ids([e for group in groups for e in group])
    communities: list[Community] = []
    for number, group in enumerate(groups, 1):
        # The best-connected members name the community; degree inside it, not overall popularity.
        members = set(group)
        degree = {e: sum(d.get("weight", 1.0) for n, d in g[e].items() if n in members) for e in group}
        central = sorted(group, key=lambda e: (-degree[e], e))[:20]
        chunks = _representative_chunks(graph, central[:10], entities, total)
        names = [entities[e].name for e in central[:8] if e in entities]
        communities.append(Community(number, len(group), central, names, chunks,
                                     _summary(graph, chunks, names)))
    with graph.store.transaction() as conn:
        conn.execute("DELETE FROM graph_communities")
        conn.executemany(
            "INSERT INTO graph_communities (id, size, entities, names, chunks, summary) VALUES (?, ?, ?, ?, ?, ?)",
            [(c.id, c.size, json.dumps(c.entities), json.dumps(c.names, ensure_ascii=False), json.dumps(c.chunks),
              c.summary) for c in communities],
        )
        conn.execute("INSERT OR REPLACE INTO graph_state VALUES ('communities_of', ?)", (fingerprint,))
    seconds = time.perf_counter() - started
    log.info("%d communities from %d entities in %.1fs", len(communities), g.number_of_nodes(), seconds)
    return {"communities": len(communities), "entities": g.number_of_nodes(), "edges": g.number_of_edges(),
            "seconds": round(seconds, 2)}


def load_communities(graph: KnowledgeGraph) -> list[Community]:
    """The stored communities, largest first."""
    with graph.store.read() as conn:
        rows = conn.execute("SELECT id, size, entities, names, chunks, summary FROM graph_communities ORDER BY id"
                            ).fetchall()
    return [Community(r[0], r[1], json.loads(r[2]), json.loads(r[3]), json.loads(r[4]), r[5]) for r in rows]


def _representative_chunks(graph: KnowledgeGraph, members: list[int], entities: dict[int, Any], total: int,
                           n: int = 3) -> list[int]:
    """Chunks that mention most of the community's central entities, rarer entities counting more."""
    score: dict[int, float] = defaultdict(float)
    for entity_id, chunk_id, weight in graph.chunks_of(members, limit=200):
        entity = entities.get(entity_id)
        idf = math.log(1 + total / max(entity.chunks if entity else 1, 1))
        score[chunk_id] += weight * idf
    return [c for c, _ in sorted(score.items(), key=lambda item: (-item[1], item[0]))[:n]]


def _summary(graph: KnowledgeGraph, chunk_ids: list[int], names: list[str]) -> str:
    """Sentences quoted from the representative chunks that name a central entity, in chunk order."""
    if not chunk_ids:
        return ""
    texts = {h_id: hit.text for h_id, hit in graph.store.get(chunk_ids).items()}
    lowered = [n.lower() for n in names]
    picked: list[str] = []
    length = 0
    for chunk_id in chunk_ids:
        for sentence in sentences(texts.get(chunk_id, ""), line_breaks=True):
            if any(name in sentence.lower() for name in lowered) and sentence not in picked:
                picked.append(sentence)
                length += len(sentence) + 1
                if length >= _SUMMARY_CHARS:
                    return " ".join(picked)[:_SUMMARY_CHARS].rstrip() + "…"
                break
    return " ".join(picked)
