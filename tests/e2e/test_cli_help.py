"""``--help`` of every command as a newcomer reads it: what each option does, its default, no raw placeholders."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest

from ragtune.cli.main import click_command

pytestmark = pytest.mark.e2e

# What Typer prints when left alone: type placeholders, and the " ." a '[default: X]' leaves when Rich eats it.
PLACEHOLDER = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\])>|\w \.(?:\s|$)")


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from walk(sub, (*path, name))


def rendered_help(path: tuple[str, ...]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        click_command().main(args=[*path, "--help"], prog_name="ragtune", standalone_mode=False)
    return out.getvalue()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one help line per option, so a line holds all of its text


def test_every_option_says_what_it_does_and_its_default() -> None:
    commands = list(walk(click_command()))
    assert len(commands) > 30
    for path, command in commands:
        for param in command.params:
            if param.param_type_name != "option":
                continue
            where = f"ragtune {' '.join(path)} {param.opts[0]}"
            assert param.help, f"{where} has no help"
            if param.is_flag or param.required or param.default is not None:
                continue  # a flag says what it turns on; other defaults are printed by the help itself
            assert re.search(r"\[default: |\(optional\)", param.help), f"{where} does not say its default"


def test_help_shows_no_raw_placeholders_and_keeps_the_defaults() -> None:
    for path, _ in walk(click_command()):
        text = rendered_help(path)
        assert "Usage: ragtune" in text
        found = PLACEHOLDER.search(text)
        assert found is None, f"'ragtune {' '.join(path)} --help' shows {found.group(0)!r}:\n{text}"
    serve = rendered_help(("serve",))
    assert "Port to listen on. [default: the server_port setting: 8080]" in serve
    assert "[default: the server_host setting: 127.0.0.1]" in serve
    assert "--no-auth " in serve and "INTEGER" in serve and "--kb-root          PATH" in serve
    for command in ("ask", "search", "ingest", ("kb", "stats")):
        text = rendered_help((command,) if isinstance(command, str) else command)
        assert "Knowledge base directory. [default: $RAGTUNE_KB, else ./ragtune_kb]" in text


def test_ask_and_search_name_their_options_alike() -> None:
    for command in ("ask", "search"):
        text = rendered_help((command,))
        assert re.search(r"--top-k\s+-k\s+INTEGER", text), text
        assert "--mode" in text and "--filter" in text
