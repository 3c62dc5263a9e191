"""Peak memory of one serving configuration: run as ``python -m ragtune.loop.probe SPEC`` by the loop's gate, so
each system is measured in a process of its own (a process's peak RSS only ever grows)."""

from __future__ import annotations

import json
import resource
import sys

from ragtune.kb import KnowledgeBase
from ragtune.loop.evaluation import Variant, open_variant


def main(argv: list[str] | None = None) -> None:
    """SPEC is JSON: ``{"kb", "variant", "questions", "answers"}``; prints ``{"peak_rss_mb": ...}``."""
    spec = json.loads((argv or sys.argv[1:])[0])
    with KnowledgeBase.open(spec["kb"], audit=False) as kb, \
            open_variant(kb, Variant.from_dict(spec["variant"]), answers=spec["answers"]) as served:
        for question in spec["questions"]:
            if spec["answers"]:
                served.ask(question)
            else:
                served.retrieve(question, 20)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's own peak resident memory, in MB. Linux's ru_maxrss survives exec: a probe started by a large
    process (the loop after training: 16 GB) would report its parent's size, the same for every system, so the
    memory guard compared nothing. /proc/self/status's VmHWM belongs to this program's memory alone."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, kilobytes elsewhere
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)


if __name__ == "__main__":
    main()
