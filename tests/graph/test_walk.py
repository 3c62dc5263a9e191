"""Graph retrieval: seeds (exact, fuzzy, partial), the bounded walk to the second hop, filters, paths."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ragtune.errors import ConfigError
from ragtune.graph import KnowledgeGraph, Mention, build_communities, entity_key
from ragtune.retrieve.graph import GraphSearcher
from ragtune.store.local import DocumentRecord, DocumentUpdate, LocalStore
from ragtune.types import Chunk

pytestmark = pytest.mark.unit


class CapitalisedWords:
    """Stands in for spaCy in these logic tests: every capitalised word (or Word Word pair) is a name."""

    def extract(self, texts, languages=None):
        out = []
        for text in texts:
            names = re.findall(r"[A-Z][a-z]+(?: [A-Z][a-z]+)?", text)
            merged = {}
            for name in names:
                merged.setdefault(entity_key(name), Mention(entity_key(name), name, "name", 1.0))
            out.append([m for m in merged.values() if m.key])
        return out

    def extract_one(self, text):
        return self.extract([text])[0]


CHUNKS = {
    "lead": "Ada Park leads Lumen.",
    "office": "Lumen works from Harbour.",
    "other-lead": "Marcus Webb leads Cobalt.",
    "other-office": "Cobalt works from Riverside.",
    "side": "Harbour hosts Quayfest.",
}


@pytest.fixture()
def graph(tmp_path: Path) -> KnowledgeGraph:
    store = LocalStore(tmp_path / "kb", embedder_name="test", dim=4, create=True)
    graph = KnowledgeGraph(store, CapitalisedWords())  # type: ignore[arg-type]
    store.add_extension(graph)
    texts = dict(CHUNKS)
    # Filler that mentions the company everywhere: a hub the walk must not use as a bridge.
    texts.update({f"filler{i}": f"Acme ships parcel number {i}." for i in range(30)})
    for i, (name, text) in enumerate(texts.items()):
        record = DocumentRecord(id=name, uri=f"mem://{name}")
        chunk = Chunk(text=text, start=0, end=len(text))
        store.apply([DocumentUpdate(record, [chunk], np.eye(4, dtype=np.float32)[[i % 4]])])
    yield graph
    store.close()


def _ids(graph: KnowledgeGraph) -> dict[str, int]:
    with graph.store.read() as conn:
        return {doc: cid for cid, doc in conn.execute("SELECT id, document_id FROM chunks")}


def test_the_walk_reaches_the_second_hop_and_says_how(graph):
    ids = _ids(graph)
    ranked = GraphSearcher(graph).rank("Which office does the team led by Ada Park use?", 10)
    order = [c for c, _ in ranked.ranking]
    assert order[:2] == [ids["lead"], ids["office"]]
    assert ids["other-office"] not in order and ids["other-lead"] not in order
    assert ranked.paths[ids["lead"]] == ["question: Ada Park"]
    assert ranked.paths[ids["office"]] == ["question: Ada Park", "chunk lead-0-0", "entity: Lumen"]
    assert [s.entity.key for s in ranked.seeds] == ["adapark"]


def test_the_walk_never_leaves_the_allowed_chunks(graph):
    ids = _ids(graph)
    searcher = GraphSearcher(graph)
    allowed = set(ids.values()) - {ids["office"]}
    assert ids["office"] not in [c for c, _ in searcher.rank("Ada Park", 10, allowed=allowed).ranking]
    # Nor through them: without the first hop, the second is not reached (nothing leaks from a hidden chunk).
    allowed = set(ids.values()) - {ids["lead"]}
    assert searcher.rank("Ada Park", 10, allowed=allowed).ranking == []


def test_hubs_are_not_bridges(graph):
    ids = _ids(graph)
    searcher = GraphSearcher(graph, max_entity_chunks=10)
    # Acme is in 30 chunks: too common to start from, and never a bridge from Quayfest's chunk onwards.
    assert searcher.rank("Acme", 10).ranking == []
    order = [c for c, _ in searcher.rank("Quayfest", 10).ranking]
    assert order[0] == ids["side"] and ids["office"] in order
    assert not any(ids[f"filler{i}"] in order for i in range(30))


def test_only_specific_entities_start_a_walk(graph):
    ids = _ids(graph)
    searcher = GraphSearcher(graph, min_specific=1, seed_share=0.0)
    assert searcher.rank("nothing here", 10).ranking == []
    # Lumen is in two chunks: too common to start from at this setting, so Ada Park's question walks from her.
    assert searcher.rank("What does Lumen do?", 10).ranking == []
    ranked = searcher.rank("Does Ada Park still run Lumen?", 10)
    assert [c for c, _ in ranked.ranking][:2] == [ids["lead"], ids["office"]]
    assert GraphSearcher(graph, max_results=1).rank("Ada Park", 10).ranking == [(ids["lead"], pytest.approx(
        ranked.ranking[0][1], rel=1))]


@pytest.mark.parametrize(("question", "key", "match"), [
    ("Where does ada park work?", None, None),  # lower-case words match no name: "park" is not a person
    ("Where does Ada Park work?", "adapark", "exact"),
    ("Where is Riversde?", "riverside", "fuzzy"),
    ("Is Lumens late?", "lumen", "exact"),  # noun phrases are stemmed: a plural is the same entity
    ("What does Marcus do?", "marcuswebb", "partial"),
])
def test_seeds(graph, question, key, match):
    seeds = GraphSearcher(graph).seeds(question)
    if key is None:
        assert not [s for s in seeds if s.entity.key == "adapark"]
    else:
        seed = next(s for s in seeds if s.entity.key == key)
        assert seed.match == match
        assert seed.weight > 0


def test_cheap_seeds_skip_the_tagger_and_fuzzy_matching(graph):
    searcher = GraphSearcher(graph)
    assert [s.entity.key for s in searcher.seeds("Is Ada Park in Riversde?", cheap=True)] == ["adapark"]


def test_rarer_seeds_weigh_more(graph):
    seeds = {s.entity.key: s.weight for s in GraphSearcher(graph, max_entity_chunks=100).seeds("Acme and Lumen")}
    assert seeds["lumen"] > seeds["acme"]


def test_communities_give_global_questions_their_chunks(graph):
    report = build_communities(graph, min_size=2, max_share=0.5)
    assert report["communities"] >= 1
    chunks = GraphSearcher(graph).community_chunks("What happens around Lumen and Harbour?")
    assert _ids(graph)["office"] in chunks
    stats = graph.stats()
    assert stats["communities"] == report["communities"] and not stats["communities_stale"]


def test_export_graphml(graph, tmp_path):
    import networkx as nx

    from ragtune.graph import export_graphml

    report = export_graphml(graph, tmp_path / "g.graphml")
    g = nx.read_graphml(tmp_path / "g.graphml")
    assert report["nodes"] == g.number_of_nodes() and report["chunks"] == 35
    lumen = next(n for n, d in g.nodes(data=True) if d.get("key") == "lumen")
    neighbours = {g.nodes[n]["label"] for n in g.neighbors(lumen)}
    assert {"Ada Park", "Harbour", "lead#0", "office#0"} <= neighbours


def test_the_graph_lives_in_the_local_store_only():
    with pytest.raises(ConfigError, match="local store"):
        KnowledgeGraph(object())  # type: ignore[arg-type]


def test_spread_over_documents_puts_each_documents_best_chunk_first():
    from ragtune.retrieve.retriever import spread_over_documents
    from ragtune.types import ChunkMeta, Hit

    def hit(doc: str, n: int) -> Hit:
        return Hit(chunk_id=f"{doc}-{n}", document_id=doc, source=doc, text="", score=0.0, meta=ChunkMeta())

    order = [hit("a", 0), hit("a", 1), hit("b", 0), hit("a", 2), hit("c", 0), hit("b", 1)]
    assert [h.chunk_id for h in spread_over_documents(order)] == ["a-0", "b-0", "c-0", "a-1", "a-2", "b-1"]
