"""Wall time of one-shot CLI commands, start-up included: what a user waits for at the shell.

A KB is ingested from examples/ (English and Chinese pages) once; then each command runs ``--runs`` times in a fresh
process and the median is reported. ``--source DIR`` (repeatable, ``label=DIR``) runs the same commands with another
checkout's ``src`` first on PYTHONPATH, side by side in the same run (e.g. a git worktree of an older commit).

    git worktree add /tmp/before 900d561
    .venv/bin/python bench/cli_startup.py --source before=/tmp/before/src --source after=src
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, loadavg, machine, print_table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "help": ["--help"],
    "search (English)": ["search", "how do I rotate API keys", "-k", "3"],
    "search (Chinese)": ["search", "年假有多少天", "-k", "3"],
    "ask, refused (English)": ["ask", "What is the capital of Peru?"],
    "ask, answered (English)": ["ask", "What is the refund window for enterprise plans?"],
}


def run(source: Path, args: list[str], kb: Path | None) -> float:
    env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ragtune", *args, *(["--kb", str(kb)] if kb else [])]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with {source}:\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", action="append", default=[], help="label=DIR of a ragtune src; repeatable")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "cli_startup.json")
    args = parser.parse_args()
    sources = dict(s.split("=", 1) for s in args.source) or {"this": str(ROOT / "src")}
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        kb = Path(tmp) / "kb"
        first = Path(next(iter(sources.values())))
        run(first, ["ingest", str(ROOT / "examples")], kb)
        for name, command in COMMANDS.items():
            results[name] = {}
            for label, source in sources.items():
                times = [run(Path(source), command, None if name == "help" else kb) for _ in range(args.runs)]
                results[name][label] = {"median_s": round(statistics.median(times), 2),
                                        "runs_s": [round(t, 2) for t in times]}
                print(f"{name:26} {label:8} {results[name][label]['median_s']:6.2f} s", flush=True)
    labels = list(sources)
    print_table([[name, *[row[label]["median_s"] for label in labels]] for name, row in results.items()],
                ["command (median s)", *labels])
    write_json(args.out, {"sources": sources, "runs": args.runs, "commands": {k: " ".join(v) for k, v in
                          COMMANDS.items()}, "results": results, "loadavg": loadavg(), "machine": machine()})


if __name__ == "__main__":
    main()
