"""Would seeds matched by embedding help graph retrieval? LiHua-World evidence recall per question type with the
graph's own seeds (exact key, close spelling, part of a name) and with seeds added by embedding match: each
entity the tagger finds in the question and no seed matched is embedded with the KB's embedder and compared with
the names of every entity in the graph (all kinds, embedded once here); the three closest above a cosine
threshold join as seeds, weighted like the others (rarity) times ``weight`` × cosine.

An experiment, not a mode: the graph's seeding is patched in this process only. Reuses the graph KB that
bench/graph_lihua.py builds (WORKDIR/lihua-graph).

    OMP_NUM_THREADS=1 .venv/bin/python bench/graph_seed_embedding.py --workdir /tmp/ragtune-graph-bench
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine, print_table, write_json  # noqa: E402
from graph_lihua import evaluate_retrieval, lihua_questions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ragtune-graph-bench"))
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.8, 0.7, 0.6])
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "graph_seed_embedding.json")
    args = parser.parse_args()

    import numpy as np

    from ragtune.graph import Entity
    from ragtune.kb import KnowledgeBase
    from ragtune.retrieve import graph as graph_module

    questions = lihua_questions()
    own_seeds = graph_module.GraphSearcher.seeds
    result: dict[str, Any] = {"settings": vars(args) | {"workdir": str(args.workdir), "out": str(args.out)}}
    with KnowledgeBase.open(args.workdir / "lihua-graph") as kb:
        graph = kb.graph
        assert graph is not None, "build the graph KB first: bench/graph_lihua.py"
        with graph.store.read() as conn:
            entities = [Entity(*row) for row in conn.execute("SELECT id, key, name, kind, chunks FROM graph_entities")]
        started = time.perf_counter()
        names = np.asarray(kb.embedder.encode_documents([e.name for e in entities]))
        result["entities"] = {"count": len(entities), "embed_seconds": round(time.perf_counter() - started, 2)}
        threshold = 1.1  # no embedding seeds

        def seeds(self: Any, query: str, *, cheap: bool = False) -> list[Any]:
            found = own_seeds(self, query, cheap=cheap)
            if cheap or threshold > 1:
                return found
            have = {s.entity.id for s in found}
            matched = {s.text.lower() for s in found}
            mentions = [m for m in self.graph.extractor.extract_one(query) if m.name.lower() not in matched]
            if not mentions:
                return found
            total = max(self.graph.chunk_total(), 1)
            vectors = np.asarray(kb.embedder.encode_queries([m.name for m in mentions]))
            for mention, vector in zip(mentions, vectors, strict=True):
                similarity = names @ vector
                for i in np.argsort(-similarity)[:3]:
                    if similarity[i] < threshold:
                        break
                    entity = entities[i]
                    if entity.id not in have:
                        have.add(entity.id)
                        weight = graph_module._idf(entity, total) * args.weight * float(similarity[i])
                        found.append(graph_module.Seed(entity, "embedding", mention.name, weight))
            return sorted(found, key=lambda s: (-s.weight, s.entity.id))

        graph_module.GraphSearcher.seeds = seeds  # type: ignore[method-assign]
        runs: dict[str, Any] = {}
        for threshold in (1.1, *args.threshold):
            label = "own seeds" if threshold > 1 else f"+ embedding >= {threshold}"
            runs[label] = {mode: evaluate_retrieval(kb, questions, mode) for mode in ("graph", "auto")}
            print(label, {m: r["Multi"] for m, r in runs[label].items()}, flush=True)
    result["runs"] = runs
    result["machine"] = machine()
    rows = [[label, mode, r["Single"]["recall@10"], r["Multi"]["recall@5"], r["Multi"]["recall@10"],
             r["refusal"]["f1"], r["latency_ms"]["p50"]] for label, modes in runs.items() for mode, r in modes.items()]
    print_table(rows, ["seeds", "mode", "single R@10", "multi R@5", "multi R@10", "refusal F1", "p50 ms"])
    write_json(args.out, result)


if __name__ == "__main__":
    main()
