"""What every command group of the CLI shares: consoles, common options, errors, JSON output and progress."""

from __future__ import annotations

import contextlib
import getpass
import json
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.status import Status
from typer.core import TyperArgument

from ragtune.errors import RagtuneError
from ragtune.settings import default_kb_path

T = TypeVar("T")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

KbOpt = Annotated[
    Path | None, typer.Option("--kb", help="Knowledge base directory. [default: $RAGTUNE_KB, else ./ragtune_kb]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
EmbedderOpt = Annotated[str | None, typer.Option(
    "--embedder", help="Embedding model (name, directory or hub id). [default: the one the KB was built with, else "
    "the embedder setting: all-MiniLM-L6-v2]")]
StoreOpt = Annotated[str | None, typer.Option(
    "--store", help="Where a new KB lives: local, postgresql://user@host/db, milvus://host:19530 or "
    "package.module:Class. An existing KB reopens where its folder says it lives. [default: the store setting: "
    "local]")]
RewriteOpt = Annotated[str | None, typer.Option(
    "--rewrite", help="Rewrite the query first with the LLM: hyde, multi, stepback or none. [default: the rewrite "
    "setting: none]")]
RerankOpt = Annotated[str | None, typer.Option(
    "--rerank", help="Rerank with 'cross-encoder:PATH' (see 'ragtune train reranker'), 'llm' or 'none'. [default: "
    "the rerank setting: none]")]
LlmOpt = Annotated[str | None, typer.Option(
    "--llm", help="Answering backend: local, openai or llamacpp. [default: the llm setting: local]")]
LlmModelOpt = Annotated[str | None, typer.Option(
    help="Model name, directory or .gguf path. [default: the llm_model setting: the bundled SmolLM2-135M-Instruct]")]
LlmBaseUrlOpt = Annotated[str | None, typer.Option(
    help="URL of an OpenAI-compatible server (--llm openai). [default: the llm_base_url setting]")]
AsGroupsOpt = Annotated[
    str | None,
    typer.Option("--as-groups", help="Act as a viewer with these access groups (comma-separated): only documents "
                 "they may read are searched, cited or shown [default: unrestricted]."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe field: --set lora.r=32 --set data.path=train.jsonl (repeatable). "
                 "[default: none]"),
]


def readable_help(command: Any) -> Any:
    """Make ``--help`` read like prose, for ``command`` (a click command built from a Typer app) and all under it.

    Help strings are plain text (so a '[default: X]' in one is shown, not eaten as Rich markup), options show
    click's metavars (PATH, TEXT, INTEGER; nothing on flags) instead of Typer's '<list[Path]>' and '<bool>', and
    arguments are named in capitals without a type column. Duck-typed: Typer ships its own copy of click.
    """
    if command.help:
        command.help = escape(command.help)
    for param in command.params:
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if param.param_type_name == "option":
            param.metavar = "" if param.is_flag else _metavar(param)
        elif isinstance(param, TyperArgument) and param.name:
            param.metavar = param.name.upper()
            param.__class__ = _Argument
    # The --help option is made (and, in Typer's click, kept) on first use.
    help_option = command.get_help_option(command.context_class(command))
    if help_option is not None:
        help_option.metavar = ""
    for sub in (getattr(command, "commands", None) or {}).values():
        readable_help(sub)
    return command


_METAVARS = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH"}


def _metavar(param: Any) -> str:
    """click's name for an option's value: PATH, TEXT, INTEGER, FLOAT, or the choices."""
    described = getattr(param, "type_descriptor", None)  # Typer ≥ 0.20 describes types itself
    if described is None:
        choices = getattr(param.type, "choices", None)
        return "[" + "|".join(map(str, choices)) + "]" if choices else str(param.type.name).upper()
    if described.choices:
        return "[" + "|".join(map(str, described.choices)) + "]"
    if described.is_path:
        return "PATH"
    annotation = described.annotation
    element = typing.get_args(annotation)[0] if described.is_list and typing.get_args(annotation) else annotation
    return _METAVARS.get(element, "VALUE")


class _Argument(TyperArgument):
    """An argument whose help row shows its name only (Typer would add '<str>' beside it)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def kb_path(kb: Path | None) -> Path:
    """The knowledge base a command works on: --kb, else $RAGTUNE_KB or ./ragtune_kb."""
    return kb if kb is not None else default_kb_path()


def cli_actor() -> str:
    """Who the audit log names for a command: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


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


@contextlib.contextmanager
def busy(message: str, disabled: bool = False) -> Iterator[Status | None]:
    """A spinner with ``message`` on stderr while something slow (loading models) happens; only in a terminal
    and never with --json. Yields the status to ``update``, or None when none is shown."""
    if disabled or not err_console.is_terminal:
        yield None
        return
    with err_console.status(message) as status:
        yield status


def empty_kb_hint(stats: dict[str, Any]) -> str | None:
    """What to do when a knowledge base has nothing to search (None when it has)."""
    if stats["chunks"]:
        return None
    path = stats["path"]
    if not stats["documents"] and not stats["failed"]:
        return f"the knowledge base at {path} has no documents yet — add some with 'ragtune ingest FILES --kb {path}'"
    return (f"the knowledge base at {path} has no searchable text: its documents are empty or failed to parse — see "
            f"'ragtune kb docs --kb {path}'")


def hit_json(hit: Any, number: int = 0, mode: str = "hybrid") -> dict[str, Any]:
    """A search hit as the CLI's JSON shows it: the server's fields (number, name, snippet, score...) plus the
    local path, the whole text, each retriever's score and rank, what ``score`` measures, and the metadata."""
    from ragtune.rag.answer_json import score_kind, source_json

    return source_json(hit, number) | {
        "source": hit.source, "text": hit.text, "scores": hit.scores, "score_kind": score_kind(hit, mode),
        "metadata": hit.meta.model_dump(), **({"path": hit.path} if hit.path else {}),
    }
