"""Helpers shared by the benchmark scripts: machine facts, load, memory, percentiles and JSON output."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
import unicodedata
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SHARED_DATA = BENCH_DIR.parent.parent / "shared" / "data"
SCIFACT_DIR = SHARED_DATA / "scifact"
#: The LiHua-World chat-log KB (its docs/ and questions), or $RAGTUNE_LIHUA when set.
LIHUA_DIR = Path(os.environ.get("RAGTUNE_LIHUA") or SHARED_DATA / "lihua-world")


def default_scifact_dir() -> Path:
    """/work/shared/data/scifact, or $RAGTUNE_SCIFACT when set."""
    return Path(os.environ.get("RAGTUNE_SCIFACT") or SCIFACT_DIR)


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages: other processes share this machine's cores."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far; compared with wall time it shows contention."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "hnswlib": _version("hnswlib"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": cpu_model(),
        "git": git_state(),
    }


def cpu_model() -> dict[str, Any]:
    """The CPU's name and the instructions the automatic precision choices look at (speeds differ by CPU)."""
    from ragtune.embed.cpu import INT8_FLAGS, cpu_flags, cpu_has_amx_bf16, cpu_has_fast_int8

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    flags = cpu_flags() or frozenset()
    return {"model": name, "int8_dot_flags": sorted(flags & INT8_FLAGS), "fast_int8": cpu_has_fast_int8(),
            "amx_bf16": cpu_has_amx_bf16(), "avx512f": "avx512f" in flags, "avx2": "avx2" in flags}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def git_state() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes (others edit it while benchmarks run)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=BENCH_DIR.parent, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "src_dirty": bool(git("status", "--porcelain", "src"))}


def percentiles(values_ms: list[float] | np.ndarray) -> dict[str, float]:
    """p50 / p95 / mean of a list of milliseconds, rounded for reading."""
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        return {}
    return {
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p95": round(float(np.percentile(arr, 95)), 3),
        "mean": round(float(arr.mean()), 3),
        "n": int(arr.size),
    }


class Phase:
    """Times a block: wall seconds, CPU seconds of this process, and the load average at its end."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Phase:
        self._wall, self._cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = cpu_seconds() - self._cpu
        self.load = loadavg()

    def elapsed(self) -> float:
        """Wall seconds since the block started (inside it)."""
        return time.perf_counter() - self._wall

    def to_dict(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall, 3), "cpu_s": round(self.cpu, 3), "loadavg_after": self.load}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def print_table(rows: list[list[Any]], header: list[str]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def scifact_train_split(beir: Path, out: Path) -> tuple[Any, str, dict[str, list[str]]]:
    """SciFact's train split cut by a seeded hash of the query id into 70 % train, 10 % dev and 20 % held out
    (the split every training benchmark uses); the three id lists are written to ``out/<part>_queries.txt``.
    Returns (dataset, its name, {"train"|"dev"|"heldout": ids})."""
    from ragtune.evaluate.beir import load_beir, split_query_ids

    dataset = load_beir(beir, "train")
    train_ids, dev_ids, heldout_ids = split_query_ids(sorted(dataset.queries), heldout=0.2, dev=0.1, seed=0)
    parts = {"train": train_ids, "dev": dev_ids, "heldout": heldout_ids}
    out.mkdir(parents=True, exist_ok=True)
    for part, ids in parts.items():
        (out / f"{part}_queries.txt").write_text("\n".join(ids) + "\n")
    print(f"queries: train {len(train_ids)}, dev {len(dev_ids)}, held-out {len(heldout_ids)}")
    return dataset, beir.resolve().name, parts


def corpus_kb(path: Path, dataset: Any, name: str) -> Any:
    """The knowledge base of the corpus at ``path`` (bundled MiniLM), built or caught up first; close it."""
    from ragtune.evaluate.retrieval import corpus_documents
    from ragtune.kb import KnowledgeBase

    kb = KnowledgeBase.open(path, create=True)
    kb.ingest_documents(corpus_documents(dataset, name), total=len(dataset.corpus))
    return kb


# ---------------------------------------------------------------------------------------------- answers

_MARKER = re.compile(r"[\[【［]\^?\s*(?:source\s*)?\d+(?:\s*[-–,，、]\s*\d+)*\s*[\]】］]", re.IGNORECASE)


def normalise(text: str) -> str:
    text = _MARKER.sub(" ", unicodedata.normalize("NFKC", text)).lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return " ".join(re.sub(r"[^\w\s:.%#-]", " ", text).split())


def _squeeze(text: str) -> str:
    return re.sub(r"[\W_]+", "", normalise(text))


def lihua_correct(answer: str, reference: str) -> bool:
    """Whether an answer states a LiHua-World reference (bench/answer_accuracy.py and bench/graph_lihua.py judge
    alike): a "Yes"/"No" reference must be the answer's first word; any other must appear whole (case, citation
    markers and punctuation aside), or each part of "A & B" with spaces and punctuation ignored ("LiHua" = "Li
    Hua"), or all its content words must (BM25 analyzer stems: 'meets' = 'meeting')."""
    from ragtune.store.text import tokenize

    # "Answer: Yes" is a yes.
    reference = re.sub(r"^\s*answer\s*:\s*", "", reference, flags=re.IGNORECASE)
    plain, wanted = normalise(answer), normalise(reference)
    if wanted in ("yes", "no"):
        first = re.match(r"\W*(yes|no)\b", plain)  # "Yes." and "yes," say yes
        return bool(first) and first.group(1) == wanted
    if wanted and wanted in plain:
        return True
    # Names are written with and without spaces ("LiHua" / "Li Hua", "ChaeSong-hwa" / "Chae Song-hwa"): each part of
    # an "A & B" reference stated with spaces and punctuation ignored.
    squeezed = _squeeze(answer)
    parts = [p for p in map(_squeeze, reference.split("&")) if p]
    if parts and all(p in squeezed for p in parts):
        return True
    terms = set(tokenize(reference))
    return bool(terms) and terms <= set(tokenize(answer))
