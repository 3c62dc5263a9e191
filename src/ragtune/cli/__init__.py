"""The ragtune command line (Typer): one module per command group, shared helpers in ``common``."""

from ragtune.cli.main import app, main

__all__ = ["app", "main"]
