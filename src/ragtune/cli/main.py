"""The ragtune command line: the top-level app, its command groups, and the entry point."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from ragtune.cli import audit, core, data, evaluate, feedback, graph, jobs, kb, keys, loop, model, serve, train
from ragtune.cli.common import err_console, readable_help
from ragtune.errors import RagtuneError

app = typer.Typer(help="ragtune: private-knowledge RAG and fine-tuning, offline.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
for command in (core.init, core.ingest, core.search, core.ask, serve.serve, jobs.jobs, audit.audit):
    app.command()(command)
for name, group in (("kb", kb.app), ("eval", evaluate.app), ("data", data.app), ("train", train.app),
                    ("model", model.app), ("keys", keys.app), ("feedback", feedback.app), ("loop", loop.app),
                    ("graph", graph.app)):
    app.add_typer(group, name=name)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not verbose:
        # bitsandbytes warns on import that an optional 4-bit CPU kernel package is missing; nothing ragtune
        # runs outside QLoRA needs it, and it would open every `ask`.
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def click_command() -> Any:
    """The click command ``ragtune`` runs: the app with readable help (see ``readable_help``)."""
    return readable_help(typer.main.get_command(app))


def main() -> None:
    try:
        click_command()()
    except RagtuneError as exc:  # a last resort; commands report their own errors
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
