"""JSON Lines files: one reader and one writer for every data file ragtune reads or writes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError


def read_jsonl(
    path: str | Path, *, error: type[Exception] = ConfigError, what: str = "", missing: str = ""
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line. A missing file (``what`` kind of file; ``missing`` says how
    to get it) or a line that is not a JSON object raises ``error`` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        kind = f"{what} file" if what else "file"
        raise error(f"{path}: no such {kind}" + (f" — {missing}" if missing else ""))
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise error(f"{path} line {number}: not valid JSON ({exc.msg}) — write one JSON object per line") \
                    from exc
            if not isinstance(row, dict):
                raise error(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write ``rows`` (dicts, or objects with ``to_dict``) one per line, creating parent folders; returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row.to_dict() if hasattr(row, "to_dict") else row, ensure_ascii=False) + "\n")
            n += 1
    return n
