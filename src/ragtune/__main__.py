"""Allows ``python -m ragtune``."""

from ragtune.cli import main

main()
