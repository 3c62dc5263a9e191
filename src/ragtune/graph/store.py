"""The chunk–entity graph in the KB's SQLite: written in the same transaction as the chunks, built, verified, read."""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ragtune.errors import ConfigError
from ragtune.graph.extract import EXTRACTOR_VERSION, EntityExtractor, Mention, entity_key
from ragtune.store.local import DocumentUpdate, LocalStore
from ragtune.types import Chunk

log = logging.getLogger(__name__)

NAME = "graph"

# Chunk nodes are the store's chunks (by integer id); entity nodes and mention edges (chunk → entity, weighted)
# are stored. Co-occurrence edges (entity — entity, weighted by shared chunks) follow from the mentions and are
# computed when needed, so a document's change touches only its own mention rows and its entities' counts.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS graph_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS graph_entities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    chunks INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS graph_mentions (
    chunk_id INTEGER NOT NULL,
    entity_id INTEGER NOT NULL,
    weight REAL NOT NULL,
    alias TEXT,
    PRIMARY KEY (chunk_id, entity_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS graph_mentions_entity ON graph_mentions (entity_id);
CREATE TABLE IF NOT EXISTS graph_chunks (chunk_id INTEGER PRIMARY KEY, entities INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS graph_communities (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    entities TEXT NOT NULL,
    names TEXT NOT NULL,
    chunks TEXT NOT NULL,
    summary TEXT NOT NULL
);
"""
_TABLES = ("graph_state", "graph_entities", "graph_mentions", "graph_chunks", "graph_communities")
_BATCH = 500  # ids per IN (...) list, well below SQLite's variable limit

BuildProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Entity:
    """An entity node: its id, alias-merged key, display name, kind and the number of chunks mentioning it."""

    id: int
    key: str
    name: str
    kind: str
    chunks: int


def graph_enabled(store: LocalStore) -> bool:
    """Whether this KB has a graph (built by 'ragtune graph build' or an ingest with graph = true)."""
    with store.read() as conn:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'graph_chunks'"
                            ).fetchone() is not None


class KnowledgeGraph:
    """The graph of a local store: a store extension (so every write of chunks writes their mentions in the
    same transaction), a resumable builder for chunks stored before it existed, and the reads retrieval needs."""

    name = NAME

    def __init__(self, store: LocalStore, extractor: EntityExtractor | None = None) -> None:
        if not isinstance(store, LocalStore):
            raise ConfigError("the knowledge graph is kept in the local store only — use store = \"local\" for "
                              "graph retrieval, or search with mode hybrid")
        self.store = store
        self.extractor = extractor or EntityExtractor()
        self._total: tuple[tuple[int, int], int] | None = None

    @property
    def extractor_version(self) -> str:
        """What the graph records as its extractor (one without a version of its own counts as the rules')."""
        return str(getattr(self.extractor, "version", EXTRACTOR_VERSION))

    # ------------------------------------------------------------------ store extension

    def create(self, conn: sqlite3.Connection) -> None:
        for statement in (s.strip() for s in _SCHEMA.split(";")):
            if statement:
                conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO graph_state VALUES ('extractor', ?)", (self.extractor_version,))

    def prepare(self, chunks: list[Chunk]) -> list[list[Mention]]:
        return self.extractor.extract(
            [_chunk_text(c.text, c.meta.section_title) for c in chunks], [c.meta.language for c in chunks]
        )

    def write(
        self, conn: sqlite3.Connection, added: list[tuple[list[int], DocumentUpdate]], removed: list[int]
    ) -> None:
        if removed:
            _forget(conn, removed)
        for ids, update in added:
            mentions = update.extras.get(self.name)
            if mentions is None or len(mentions) != len(ids):
                mentions = self.prepare(update.chunks)
            _record(conn, ids, mentions)

    def verify(self, conn: sqlite3.Connection) -> list[str]:
        problems = []
        fix = f" — run 'ragtune graph build --kb {self.store.directory}'"
        missing = conn.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM graph_chunks g WHERE g.chunk_id = c.id)"
        ).fetchone()[0]
        if missing:
            problems.append(f"graph: {missing} chunks are not in the graph{fix}")
        stale = conn.execute(
            "SELECT count(*) FROM graph_chunks g WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = g.chunk_id)"
        ).fetchone()[0]
        stale += conn.execute(
            "SELECT count(DISTINCT chunk_id) FROM graph_mentions m"
            " WHERE NOT EXISTS (SELECT 1 FROM graph_chunks g WHERE g.chunk_id = m.chunk_id)"
        ).fetchone()[0]
        if stale:
            problems.append(f"graph: {stale} deleted chunks are still in the graph{fix}")
        counts = conn.execute(
            "SELECT count(*) FROM graph_entities e"
            " WHERE e.chunks != (SELECT count(*) FROM graph_mentions m WHERE m.entity_id = e.id) OR e.chunks <= 0"
        ).fetchone()[0]
        if counts:
            problems.append(f"graph: {counts} entities have wrong chunk counts{fix}")
        return problems

    # ------------------------------------------------------------------ building

    def build(self, *, rebuild: bool = False, batch_size: int = 256, on_progress: BuildProgress | None = None
              ) -> dict[str, Any]:
        """Put every chunk that is not yet in the graph into it, batch by batch (each batch one transaction, so
        an interrupted build resumes where it stopped); first drop what refers to deleted chunks and recount.
        ``rebuild`` starts from an empty graph (after the extraction rules changed, say)."""
        if batch_size <= 0:
            raise ConfigError("batch_size must be greater than 0.")
        started = time.perf_counter()
        self.store.add_extension(self)
        with self.store.transaction() as conn:
            if rebuild:
                for table in ("graph_mentions", "graph_chunks", "graph_entities", "graph_communities"):
                    conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
                conn.execute("INSERT OR REPLACE INTO graph_state VALUES ('extractor', ?)", (self.extractor_version,))
            repaired = _repair(conn)
        with self.store.read() as conn:
            total = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
            done = conn.execute("SELECT count(*) FROM graph_chunks").fetchone()[0]
        resumed_from = done
        extracted = 0
        last = 0
        if on_progress:
            on_progress(done, total)
        while True:
            with self.store.read() as conn:
                rows = conn.execute(
                    "SELECT c.id, c.text, c.language, json_extract(c.meta, '$.section_title') FROM chunks c"
                    " WHERE c.id > ? AND NOT EXISTS (SELECT 1 FROM graph_chunks g WHERE g.chunk_id = c.id)"
                    " ORDER BY c.id LIMIT ?", (last, batch_size),
                ).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            mentions = self.extractor.extract([_chunk_text(r[1], r[3]) for r in rows], [r[2] for r in rows])
            with self.store.transaction() as conn:
                # Another process may have deleted these chunks or put them in the graph meanwhile.
                ids = [r[0] for r in rows]
                live = _existing(conn, "SELECT c.id FROM chunks c WHERE c.id IN ({}) AND NOT EXISTS"
                                 " (SELECT 1 FROM graph_chunks g WHERE g.chunk_id = c.id)", ids)
                keep = [(i, m) for i, m in zip(ids, mentions, strict=True) if i in live]
                _record(conn, [i for i, _ in keep], [m for _, m in keep])
            extracted += len(keep)
            done += len(keep)
            if on_progress:
                on_progress(done, max(total, done))
        return {"chunks": done, "extracted": extracted, "resumed_from": resumed_from, "repaired": repaired,
                "seconds": round(time.perf_counter() - started, 2)}

    def drop(self) -> None:
        """Remove the graph from the KB (the chunks are untouched); it is no longer kept in step."""
        with self.store.transaction() as conn:
            for table in _TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table}")  # noqa: S608 - fixed table names
        self.store.extensions[:] = [e for e in self.store.extensions if e.name != self.name]

    # ------------------------------------------------------------------ reads

    def stats(self) -> dict[str, Any]:
        with self.store.read() as conn:
            kinds = dict(conn.execute("SELECT kind, count(*) FROM graph_entities GROUP BY kind").fetchall())
            chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
            covered = conn.execute("SELECT count(*) FROM graph_chunks").fetchone()[0]
            mentions = conn.execute("SELECT count(*) FROM graph_mentions").fetchone()[0]
            state = dict(conn.execute("SELECT key, value FROM graph_state").fetchall())
            communities = conn.execute("SELECT count(*) FROM graph_communities").fetchone()[0]
            disk = _table_bytes(conn)
        return {
            "entities": sum(kinds.values()), "kinds": kinds, "mentions": mentions, "chunks": chunks,
            "chunks_in_graph": covered, "chunks_missing": max(chunks - covered, 0),
            "communities": communities, "communities_stale": communities > 0 and state.get("communities_of")
            != self.fingerprint(), "extractor": state.get("extractor"), "current_extractor": self.extractor_version,
            "disk_bytes": disk,
        }

    def fingerprint(self) -> str:
        """Changes whenever a chunk enters or leaves the graph (communities record the one they were made of)."""
        with self.store.read() as conn:
            count, top = conn.execute("SELECT count(*), coalesce(max(chunk_id), 0) FROM graph_chunks").fetchone()
            mentions = conn.execute("SELECT count(*) FROM graph_mentions").fetchone()[0]
        return f"{count}:{top}:{mentions}"

    def chunk_total(self) -> int:
        """Chunks in the graph (read again only after a write, by any process: every question needs it)."""
        with self.store.read() as conn:
            version = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
            if self._total is None or self._total[0] != version:
                self._total = (version, int(conn.execute("SELECT count(*) FROM graph_chunks").fetchone()[0]))
            return self._total[1]

    def entities(self, top: int = 20, *, kind: str | None = None) -> list[dict[str, Any]]:
        """The most mentioned entities with their aliases (other spellings merged into them)."""
        sql = "SELECT id, key, name, kind, chunks FROM graph_entities"
        params: list[Any] = []
        if kind:
            sql += " WHERE kind = ?"
            params.append(kind)
        sql += " ORDER BY chunks DESC, name LIMIT ?"
        params.append(top)
        with self.store.read() as conn:
            rows = [Entity(*r) for r in conn.execute(sql, params)]
            return [{**_entity_json(e), "aliases": self._aliases(conn, e)} for e in rows]

    def _aliases(self, conn: sqlite3.Connection, entity: Entity, limit: int = 8) -> list[str]:
        return [r[0] for r in conn.execute(
            "SELECT DISTINCT alias FROM graph_mentions WHERE entity_id = ? AND alias IS NOT NULL LIMIT ?",
            (entity.id, limit))]

    def by_keys(self, keys: Iterable[str]) -> dict[str, Entity]:
        """Entities by key (keys without an entity are absent)."""
        wanted = list(dict.fromkeys(k for k in keys if k))
        out: dict[str, Entity] = {}
        with self.store.read() as conn:
            for part in _parts(wanted):
                sql = f"SELECT id, key, name, kind, chunks FROM graph_entities WHERE key IN ({_marks(part)})"
                out.update((r[1], Entity(*r)) for r in conn.execute(sql, part))
        return out

    def by_ids(self, ids: Iterable[int]) -> dict[int, Entity]:
        wanted = list(dict.fromkeys(ids))
        out: dict[int, Entity] = {}
        with self.store.read() as conn:
            for part in _parts(wanted):
                sql = f"SELECT id, key, name, kind, chunks FROM graph_entities WHERE id IN ({_marks(part)})"
                out.update((r[0], Entity(*r)) for r in conn.execute(sql, part))
        return out

    def names(self) -> list[Entity]:
        """Every entity except noun phrases (the candidates of fuzzy name matching)."""
        with self.store.read() as conn:
            return [Entity(*r) for r in conn.execute(
                "SELECT id, key, name, kind, chunks FROM graph_entities WHERE kind != 'concept'")]

    def version(self) -> tuple[int, int]:
        """(entities, largest entity id): cheap to read, changes when entities come or go."""
        with self.store.read() as conn:
            count, top = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM graph_entities").fetchone()
        return int(count), int(top)

    def find(self, name: str) -> Entity | None:
        """The entity a name refers to: by key (aliases merged), as a name or as a noun phrase."""
        found = self.by_keys([entity_key(name), entity_key(name, "concept")])
        if not found:
            return None
        return max(found.values(), key=lambda e: e.chunks)

    def chunks_of(self, entity_ids: Sequence[int], *, limit: int | None = None) -> list[tuple[int, int, float]]:
        """(entity id, chunk id, weight) mention edges of entities, heaviest first per entity (``limit`` each)."""
        out: list[tuple[int, int, float]] = []
        with self.store.read() as conn:
            for part in _parts(list(dict.fromkeys(entity_ids))):
                # One query for all the entities, each cut at its ``limit`` heaviest mentions.
                sql = ("SELECT entity_id, chunk_id, weight FROM (SELECT entity_id, chunk_id, weight, row_number()"
                       " OVER (PARTITION BY entity_id ORDER BY weight DESC, chunk_id) AS n FROM graph_mentions"
                       f" WHERE entity_id IN ({_marks(part)}))")
                params = list(part)
                if limit is not None:
                    sql += " WHERE n <= ?"
                    params.append(limit)
                out.extend(conn.execute(sql + " ORDER BY entity_id, n", params).fetchall())
        return out

    def entities_of(self, chunk_ids: Sequence[int]) -> list[tuple[int, int, float]]:
        """(chunk id, entity id, weight) mention edges of chunks."""
        out: list[tuple[int, int, float]] = []
        with self.store.read() as conn:
            for part in _parts(list(dict.fromkeys(chunk_ids))):
                out.extend(conn.execute(
                    "SELECT chunk_id, entity_id, weight FROM graph_mentions"
                    f" WHERE chunk_id IN ({_marks(part)})", part).fetchall())
        return out

    def chunk_uids(self, chunk_ids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        with self.store.read() as conn:
            for part in _parts(list(dict.fromkeys(chunk_ids))):
                out.update(conn.execute(f"SELECT id, uid FROM chunks WHERE id IN ({_marks(part)})", part).fetchall())
        return out

    def neighbors(self, name: str, k: int = 10) -> dict[str, Any]:
        """An entity, the entities it shares chunks with (most shared first) and the sources that mention it."""
        entity = self.find(name)
        if entity is None:
            raise ConfigError(f"no entity named '{name}' in the graph — list them with 'ragtune graph entities'")
        with self.store.read() as conn:
            rows = conn.execute(
                "SELECT e.id, e.key, e.name, e.kind, e.chunks, count(*) AS shared, sum(min(a.weight, b.weight))"
                " FROM graph_mentions a JOIN graph_mentions b ON b.chunk_id = a.chunk_id AND b.entity_id != a.entity_id"
                " JOIN graph_entities e ON e.id = b.entity_id WHERE a.entity_id = ?"
                " GROUP BY e.id ORDER BY shared DESC, e.chunks ASC LIMIT ?", (entity.id, k),
            ).fetchall()
            sources = [r[0] for r in conn.execute(
                "SELECT DISTINCT d.uri FROM graph_mentions m JOIN chunks c ON c.id = m.chunk_id"
                " JOIN documents d ON d.id = c.document_id WHERE m.entity_id = ? ORDER BY d.uri LIMIT ?",
                (entity.id, k))]
            aliases = self._aliases(conn, entity)
        return {
            "entity": {**_entity_json(entity), "aliases": aliases},
            "neighbors": [{**_entity_json(Entity(*r[:5])), "shared_chunks": r[5], "weight": round(r[6], 4)}
                          for r in rows],
            "sources": sources,
        }

    def cooccurrence(self, *, min_chunks: int = 1, max_share: float = 1.0, kinds: Sequence[str] | None = None
                     ) -> Iterator[tuple[int, int, float]]:
        """Entity–entity edges (a, b, weight = chunks they share, weighted by the lighter mention) among
        entities in at least ``min_chunks`` and at most ``max_share`` of the chunks."""
        total = max(self.chunk_total(), 1)
        with self.store.read() as conn:
            eligible = {r[0] for r in conn.execute(
                "SELECT id, kind FROM graph_entities WHERE chunks >= ? AND chunks <= ?",
                (min_chunks, max(math.floor(max_share * total), min_chunks)))
                if kinds is None or r[1] in kinds}
            edges: dict[tuple[int, int], float] = {}
            current = -1
            members: list[tuple[int, float]] = []
            for chunk_id, entity_id, weight in conn.execute(
                    "SELECT chunk_id, entity_id, weight FROM graph_mentions ORDER BY chunk_id"):
                if chunk_id != current:
                    _add_pairs(edges, members)
                    current, members = chunk_id, []
                if entity_id in eligible:
                    members.append((entity_id, weight))
            _add_pairs(edges, members)
        for (a, b), weight in edges.items():
            yield a, b, weight


# ---------------------------------------------------------------------------------------------- SQL helpers


def _chunk_text(text: str, section_title: str | None) -> str:
    # Section titles are part of what a chunk is about (as for BM25), e.g. a paper's title above its abstract.
    return text if not section_title or text.startswith(section_title) else f"{section_title}\n{text}"


def _record(conn: sqlite3.Connection, chunk_ids: Sequence[int], mentions: Sequence[Sequence[Mention]]) -> None:
    """Mention edges of new chunks, creating or counting up their entities."""
    rows: list[tuple[int, int, float, str | None]] = []
    for chunk_id, found in zip(chunk_ids, mentions, strict=True):
        for mention in found:
            entity_id, name = conn.execute(
                "INSERT INTO graph_entities (key, name, kind, chunks) VALUES (?, ?, ?, 1)"
                " ON CONFLICT (key) DO UPDATE SET chunks = chunks + 1 RETURNING id, name",
                (mention.key, mention.name, mention.kind),
            ).fetchone()
            rows.append((chunk_id, entity_id, mention.weight, mention.name if mention.name != name else None))
    conn.executemany("INSERT INTO graph_mentions (chunk_id, entity_id, weight, alias) VALUES (?, ?, ?, ?)", rows)
    conn.executemany("INSERT OR REPLACE INTO graph_chunks (chunk_id, entities) VALUES (?, ?)",
                     [(cid, len(found)) for cid, found in zip(chunk_ids, mentions, strict=True)])


def _forget(conn: sqlite3.Connection, chunk_ids: Sequence[int]) -> None:
    """Drop removed chunks' mention edges; their entities are counted down and deleted when unmentioned."""
    for part in _parts(list(chunk_ids)):
        marks = _marks(part)
        counts = conn.execute(
            f"SELECT entity_id, count(*) FROM graph_mentions WHERE chunk_id IN ({marks}) GROUP BY entity_id", part
        ).fetchall()
        conn.executemany("UPDATE graph_entities SET chunks = chunks - ? WHERE id = ?", [(n, e) for e, n in counts])
        conn.execute(f"DELETE FROM graph_mentions WHERE chunk_id IN ({marks})", part)
        conn.execute(f"DELETE FROM graph_chunks WHERE chunk_id IN ({marks})", part)
        touched = [e for e, _ in counts]
        for group in _parts(touched):
            conn.execute(f"DELETE FROM graph_entities WHERE id IN ({_marks(group)}) AND chunks <= 0", group)


def _repair(conn: sqlite3.Connection) -> dict[str, int]:
    """Forget chunks that no longer exist, and edges of chunks whose graph record is gone (they are extracted
    again), then recount entities: what a writer that bypassed the graph, or a hand edit, left behind."""
    stale = [r[0] for r in conn.execute(
        "SELECT chunk_id FROM graph_chunks g WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = g.chunk_id)"
        " UNION SELECT DISTINCT chunk_id FROM graph_mentions m"
        " WHERE NOT EXISTS (SELECT 1 FROM graph_chunks g WHERE g.chunk_id = m.chunk_id)")]
    _forget(conn, stale)
    recounted = conn.execute(
        "UPDATE graph_entities SET chunks = (SELECT count(*) FROM graph_mentions m WHERE m.entity_id ="
        " graph_entities.id) WHERE chunks != (SELECT count(*) FROM graph_mentions m WHERE m.entity_id ="
        " graph_entities.id)").rowcount
    emptied = conn.execute("DELETE FROM graph_entities WHERE chunks <= 0").rowcount
    return {"stale_chunks": len(stale), "recounted_entities": recounted, "deleted_entities": emptied}


def _existing(conn: sqlite3.Connection, sql: str, ids: Sequence[int]) -> set[int]:
    out: set[int] = set()
    for part in _parts(list(ids)):
        out.update(r[0] for r in conn.execute(sql.format(_marks(part)), part))
    return out


def _add_pairs(edges: dict[tuple[int, int], float], members: list[tuple[int, float]]) -> None:
    members.sort()
    for i, (a, wa) in enumerate(members):
        for b, wb in members[i + 1 :]:
            edges[(a, b)] = edges.get((a, b), 0.0) + min(wa, wb)


def _table_bytes(conn: sqlite3.Connection) -> int:
    try:
        row = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'graph\\_%' ESCAPE '\\'").fetchone()
    except sqlite3.OperationalError:  # SQLite built without the dbstat table
        return -1
    return int(row[0] or 0)


def _entity_json(entity: Entity) -> dict[str, Any]:
    return {"name": entity.name, "kind": entity.kind, "chunks": entity.chunks, "key": entity.key}


def _parts(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _marks(part: Sequence[Any]) -> str:
    return ",".join("?" * len(part))

