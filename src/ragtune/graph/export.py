"""GraphML export of the chunk–entity graph (Gephi, Cytoscape, networkx read it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.graph.communities import load_communities
from ragtune.graph.store import KnowledgeGraph


def export_graphml(graph: KnowledgeGraph, path: Path, *, chunks: bool = True) -> dict[str, Any]:
    """Write entity nodes (name, kind, chunk count, community), co-occurrence edges between them (weight,
    shared chunks) and, with ``chunks``, chunk nodes (source, chunk index) with their mention edges."""
    import networkx as nx

    g = nx.Graph()
    community_of = {e: c.id for c in load_communities(graph) for e in c.entities}
    with graph.store.read() as conn:
        for entity_id, key, name, kind, count in conn.execute(
                "SELECT id, key, name, kind, chunks FROM graph_entities"):
            g.add_node(f"e{entity_id}", type="entity", label=name, key=key, kind=kind, chunks=count,
                       community=community_of.get(entity_id, 0))
        if chunks:
            for chunk_id, uid, index, uri in conn.execute(
                    "SELECT c.id, c.uid, c.chunk_index, d.uri FROM chunks c JOIN documents d ON d.id = c.document_id"
                    " WHERE EXISTS (SELECT 1 FROM graph_chunks g WHERE g.chunk_id = c.id)"):
                g.add_node(f"c{chunk_id}", type="chunk", label=f"{Path(uri).name}#{index}", uid=uid, source=uri,
                           chunk_index=index)
            for chunk_id, entity_id, weight in conn.execute(
                    "SELECT chunk_id, entity_id, weight FROM graph_mentions"):
                g.add_edge(f"c{chunk_id}", f"e{entity_id}", type="mention", weight=weight)
    for a, b, weight in graph.cooccurrence():
        g.add_edge(f"e{a}", f"e{b}", type="cooccurrence", weight=round(weight, 4))
    path.parent.mkdir(parents=True, exist_ok=True)
    nx.write_graphml(g, path)
    entities = sum(1 for _, d in g.nodes(data=True) if d["type"] == "entity")
    return {"path": str(path), "nodes": g.number_of_nodes(), "edges": g.number_of_edges(), "entities": entities,
            "chunks": g.number_of_nodes() - entities}
