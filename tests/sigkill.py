"""What the SIGKILL tests share: counting committed rows without writing, a corpus of many one-chunk documents,
and running an ingest in a child process that is killed as soon as it has committed something."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def committed_rows(db: Path, table: str) -> int:
    """Rows of ``table`` in the SQLite file ``db`` as a reader sees them (0 while the file or table is missing)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def widget_corpus(directory: Path, n: int) -> None:
    """``n`` Markdown documents of one chunk each, every one naming its own widget."""
    directory.mkdir()
    for i in range(n):
        facts = " ".join(f"Fact {i}.{j}: the widget number {i} has property {j * 7 % 13}." for j in range(12))
        (directory / f"doc{i:04d}.md").write_text(f"# Document {i}\n\n{facts}\n")


def kill_once_committed(script: str, args: Sequence[str], committed: Callable[[], bool], *, embed_batch_size: int,
                        poll: float = 0.05, timeout: float = 240.0) -> None:
    """Run ``python -c script args`` and SIGKILL it as soon as ``committed()`` is true; fail if it finishes first
    or commits nothing within ``timeout`` seconds. Small embedding batches make many commits to land between."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "RAGTUNE_EMBED_BATCH_SIZE": str(embed_batch_size)}
    proc = subprocess.Popen([sys.executable, "-c", script, *args], env=env)
    deadline = time.monotonic() + timeout
    try:
        while not committed():
            assert proc.poll() is None, "ingest finished before it could be interrupted"
            assert time.monotonic() < deadline, "nothing was committed in time"
            time.sleep(poll)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
