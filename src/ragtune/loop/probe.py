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
    # ru_maxrss is in kilobytes on Linux.
    print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
