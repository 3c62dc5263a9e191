"""What every command group of the CLI shares: consoles, common options, errors, JSON output and progress."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ragtune.errors import RagtuneError
from ragtune.settings import default_kb_path

T = TypeVar("T")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

KbOpt = Annotated[
    Path | None, typer.Option("--kb", help="Knowledge base directory [default: $RAGTUNE_KB or ./ragtune_kb]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
EmbedderOpt = Annotated[str | None, typer.Option("--embedder", help="Embedding model (name, directory or hub id).")]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Where a new KB lives: local, postgresql://user@host/db, milvus://host:19530 or "
                 "package.module:Class [default: the 'store' setting]. An existing KB reopens where it lives."),
]
RewriteOpt = Annotated[
    str | None, typer.Option("--rewrite", help="Rewrite the query first with the LLM: hyde, multi, stepback or none.")
]
RerankOpt = Annotated[
    str | None,
    typer.Option("--rerank", help="Rerank with 'cross-encoder:PATH' (see 'ragtune train reranker'), 'llm' or 'none'."),
]
LlmOpt = Annotated[str | None, typer.Option("--llm", help="local, openai or llamacpp.")]
LlmModelOpt = Annotated[str | None, typer.Option(help="Model name, directory or .gguf path.")]
LlmBaseUrlOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible server URL.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe field: --set lora.r=32 --set data.path=train.jsonl (repeatable)."),
]


def kb_path(kb: Path | None) -> Path:
    """The knowledge base a command works on: --kb, else $RAGTUNE_KB or ./ragtune_kb."""
    return kb if kb is not None else default_kb_path()


def fail(message: str, as_json: bool, code: int = 1) -> NoReturn:
    """Report an error (as {"error": ...} with --json) and exit."""
    if as_json:
        print(json.dumps({"error": message}, ensure_ascii=False))
    else:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def emit(data: Any) -> None:
    """Print ``data`` as indented JSON (the --json output of every command)."""
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def open_kb(kb: Path | None, *, create: bool = False, **overrides: Any) -> Any:
    """Open (or with ``create`` make) the knowledge base; ``overrides`` are settings from flags."""
    from ragtune.kb import KnowledgeBase

    return KnowledgeBase.open(kb_path(kb), create=create, **overrides)


def with_kb(kb: Path | None, as_json: bool, action: Callable[[Any], T]) -> T:
    """Open the knowledge base, run ``action`` on it, close it; a RagtuneError becomes a clean exit 1."""
    try:
        with open_kb(kb) as base:
            return action(base)
    except RagtuneError as exc:
        fail(str(exc), as_json)


def progress_bar(disabled: bool) -> Progress:
    """A progress bar on stderr, shown only in a terminal and never with --json."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=err_console, disable=disabled or not err_console.is_terminal,
        transient=False,
    )


def hit_json(hit: Any) -> dict[str, Any]:
    """A search hit as the CLI's JSON shows it."""
    return {
        "chunk_id": hit.chunk_id, "document_id": hit.document_id, "source": hit.source, "score": hit.score,
        "scores": hit.scores, "text": hit.text, "metadata": hit.meta.model_dump(),
    }
