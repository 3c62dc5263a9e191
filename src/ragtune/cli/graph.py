"""The ``ragtune graph`` commands: build the knowledge graph of a KB, inspect it, export it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ragtune.cli.common import JsonOpt, KbOpt, console, emit, err_console, fail, open_kb, progress_bar, with_kb
from ragtune.errors import ConfigError, RagtuneError

app = typer.Typer(help="The knowledge graph: entities and their chunks, built without an LLM.", no_args_is_help=True)


def _graph(base: Any) -> Any:
    if base.graph is None:
        raise ConfigError(f"{base.path} has no graph yet — run 'ragtune graph build --kb {base.path}' (or ingest "
                          "with --graph)")
    return base.graph


@app.command("build")
def graph_build(
    kb: KbOpt = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Start over (e.g. after the extraction rules changed).")]
    = False,
    communities: Annotated[bool, typer.Option("--communities/--no-communities", help="Also detect communities.")]
    = True,
    as_json: JsonOpt = False,
) -> None:
    """Build the graph of the chunks already in the KB (resumable), then keep it in step with every ingest."""
    try:
        base = open_kb(kb)
    except RagtuneError as exc:
        fail(str(exc), as_json)
    try:
        with base, progress_bar(as_json) as progress:
            task = progress.add_task("extracting entities", total=None)
            report = base.build_graph(rebuild=rebuild, communities=communities,
                                      on_progress=lambda done, total: progress.update(task, completed=done,
                                                                                      total=total))
            stats = base.graph.stats()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/] — chunks done so far are kept; run the same command again to "
                          "finish")
        raise typer.Exit(130) from None
    except RagtuneError as exc:
        fail(str(exc), as_json)
    if as_json:
        emit({**report, "graph": stats})
        return
    found = report.get("communities", {})
    console.print(
        f"graph of {report['chunks']} chunks ({report['extracted']} extracted now, {report['resumed_from']} before): "
        f"{stats['entities']} entities, {stats['mentions']} mentions"
        + (f", {found['communities']} communities" if found else "") + f" — {report['seconds']:.1f}s"
    )


@app.command("stats")
def graph_stats(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Entities by kind, mentions, coverage of the chunks, communities and disk use."""
    from ragtune.graph import load_communities

    def read(base: Any) -> dict[str, Any]:
        graph = _graph(base)
        return {**graph.stats(), "top_communities": [c.to_dict() for c in load_communities(graph)[:10]]}

    stats = with_kb(kb, as_json, read)
    if as_json:
        emit(stats)
        return
    table = Table(show_header=False)
    for key, value in stats.items():
        if key != "top_communities":
            table.add_row(key, escape(str(value)))
    console.print(table)
    for community in stats["top_communities"]:
        console.print(f"[bold]community {community['id']}[/] ({community['size']} entities): "
                      f"{escape(', '.join(community['names']))}", highlight=False)
        if community["summary"]:
            console.print(f"   [dim]{escape(community['summary'][:200])}[/]", highlight=False)


@app.command("entities")
def graph_entities(
    kb: KbOpt = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many, most mentioned first.")] = 20,
    kind: Annotated[str | None, typer.Option(
        help="Only this kind: name, code, concept (noun phrase); person, org, place, thing from Chinese text or "
        "with the graph_ner setting. [default: every kind]")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The most mentioned entities, with the other spellings merged into them."""
    rows = with_kb(kb, as_json, lambda base: _graph(base).entities(top, kind=kind))
    if as_json:
        emit(rows)
        return
    table = Table("entity", "kind", "chunks", "also written")
    for row in rows:
        table.add_row(escape(row["name"]), row["kind"], str(row["chunks"]), escape(", ".join(row["aliases"])))
    console.print(table)


@app.command("neighbors")
def graph_neighbors(
    name: Annotated[str, typer.Argument(help="An entity's name (any spelling: 'Project Lumen', 'lumen').")],
    kb: KbOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, help="How many neighbours and sources.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The entities that share chunks with NAME, and the sources that mention it."""
    found = with_kb(kb, as_json, lambda base: _graph(base).neighbors(name, k))
    if as_json:
        emit(found)
        return
    entity = found["entity"]
    aliases = f" (also {', '.join(entity['aliases'])})" if entity["aliases"] else ""
    console.print(f"[bold]{escape(entity['name'])}[/] {entity['kind']}, in {entity['chunks']} chunks"
                  f"{escape(aliases)}", highlight=False)
    table = Table("neighbour", "kind", "shared chunks", "its chunks")
    for row in found["neighbors"]:
        table.add_row(escape(row["name"]), row["kind"], str(row["shared_chunks"]), str(row["chunks"]))
    console.print(table)
    for source in found["sources"]:
        console.print(f"  [cyan]{escape(source)}[/]", highlight=False)


@app.command("export")
def graph_export(
    kb: KbOpt = None,
    format: Annotated[str, typer.Option("--format", help="graphml (Gephi, Cytoscape, networkx).")] = "graphml",
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")] = Path("graph.graphml"),
    chunks: Annotated[bool, typer.Option("--chunks/--no-chunks", help="Include chunk nodes and mention edges.")]
    = True,
    as_json: JsonOpt = False,
) -> None:
    """Write the graph to a file: entity nodes, co-occurrence edges and (by default) chunk nodes with mentions."""
    from ragtune.graph import export_graphml

    if format != "graphml":
        fail(f"unknown format '{format}' — graphml is the one supported", as_json)
    report = with_kb(kb, as_json, lambda base: export_graphml(_graph(base), out, chunks=chunks))
    if as_json:
        emit(report)
    else:
        console.print(f"wrote {escape(report['path'])}: {report['entities']} entities, {report['chunks']} chunks, "
                      f"{report['edges']} edges")


@app.command("drop")
def graph_drop(kb: KbOpt = None, as_json: JsonOpt = False) -> None:
    """Remove the graph (the documents and chunks stay); ingests stop maintaining it."""
    with_kb(kb, as_json, lambda base: _graph(base).drop())
    if as_json:
        emit({"dropped": True})
    else:
        console.print("graph removed")
