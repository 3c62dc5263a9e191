"""Knowledge graph without an LLM: entity extraction, the chunk–entity graph in SQLite, communities, export."""

from ragtune.graph.communities import Community, build_communities, load_communities
from ragtune.graph.export import export_graphml
from ragtune.graph.extract import EXTRACTOR_VERSION, EntityExtractor, Mention, entity_key
from ragtune.graph.store import Entity, KnowledgeGraph, graph_enabled

__all__ = [
    "EXTRACTOR_VERSION",
    "Community",
    "Entity",
    "EntityExtractor",
    "KnowledgeGraph",
    "Mention",
    "build_communities",
    "entity_key",
    "export_graphml",
    "graph_enabled",
    "load_communities",
]
