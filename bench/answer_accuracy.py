"""Answer accuracy per answer mode — answered and correct with the right citation / false refusal / wrong / correct
refusal / invented — and latency per stage, on the invented EN + ZH fixtures (tests/fixtures/answers) or
LiHua-World dev; with the bundled model in process or the same model served over an OpenAI-compatible HTTP server.

"Before" is main's pipeline: run this script with PYTHONPATH pointing at main's src (its answers have no modes).

    python bench/answer_accuracy.py --set fixtures --modes generative extractive auto
    python bench/answer_accuracy.py --set fixtures --llm served --modes generative extractive auto
    PYTHONPATH=/path/to/main/src python bench/answer_accuracy.py --set fixtures --label before
    python bench/answer_accuracy.py --set lihua --limit 120 --modes extractive auto generative

Resumable: every answer is appended to bench/.cache/answers/<run>.jsonl and skipped on the next run.

The match is a normalised containment (stated in the JSON as "match"): text NFKC-normalised and lower-cased,
citation markers, punctuation and thousands separators dropped; an answer is correct when it contains one of the
reference facts, or states a reference number by value (二十天 = 20 days = twenty days), and — for the fixtures —
cites the document that holds it. LiHua-World references are short: a "Yes"/"No" reference must be the answer's
first word; other references must appear whole in the answer (also with spaces and punctuation ignored, each part
of "A & B": "LiHua" = "Li Hua", since 2026-12-05), or all their content words must (BM25 analyzer stems, so 'meets'
= 'meeting'). "Insufficient information" references count as unanswerable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import LIHUA_DIR, RESULTS_DIR, lihua_correct, loadavg, machine, normalise, print_table, write_json

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "answers"
LIHUA = LIHUA_DIR
CACHE = Path(__file__).resolve().parent / ".cache" / "answers"
STAGES = ("condense", "retrieve", "prompt", "first_token", "first_verified", "generate", "extract", "total")
REFUSALS = ("does not contain an answer", "没有找到这个问题的答案")


def _quantities() -> Any:
    # Loaded by path: the matcher must be the same whichever pipeline (before or after) is on the path.
    spec = importlib.util.spec_from_file_location("answer_quantities", REPO / "src" / "ragtune" / "rag" /
                                                  "quantities.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.quantities


QUANTITIES = _quantities()
def states(answer: str, fact: str) -> bool:
    """Normalised containment, or the fact's number stated by value."""
    plain, wanted = normalise(answer), normalise(fact)
    if wanted and wanted in plain:
        return True
    values = {q.value for q in QUANTITIES(answer)}
    asked = {q.value for q in QUANTITIES(fact)}
    return bool(asked) and asked <= values



# ---------------------------------------------------------------------------------------------- questions


def questions(name: str, limit: int | None, types: Sequence[str] = ()) -> tuple[list[dict[str, Any]], Path]:
    if name == "fixtures":
        suite = json.loads((FIXTURES / "suite.json").read_text(encoding="utf-8"))
        items = [{**q, "id": f"a{i}", "answerable": True} for i, q in enumerate(suite["answerable"])]
        items += [{**q, "id": f"u{i}", "answerable": False} for i, q in enumerate(suite["unanswerable"])]
        return items[:limit] if limit else items, FIXTURES / "docs"
    rows = [json.loads(line) for line in (LIHUA / "questions-dev.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if not types or r["type"] in types]
    if limit:
        # A fixed stratified subset: every type in its share, in file order.
        by_type: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_type.setdefault(row["type"], []).append(row)
        rows = [r for t, rs in by_type.items() for r in rs[: max(1, round(limit * len(rs) / len(rows)))]]
    items = [{"id": r["id"], "q": r["question"], "reference": r["answer"], "type": r["type"],
              "answerable": r["type"] != "Null", "evidence": r["evidence"], "lang": "en"} for r in rows]
    return items, LIHUA / "docs"


def judge(item: dict[str, Any], answer: Any, set_name: str) -> str:
    refused = answer.refused or any(r in answer.answer for r in REFUSALS)
    if not item["answerable"]:
        return "correct_refusal" if refused else "invented"
    if refused:
        return "false_refusal"
    if set_name == "fixtures":
        right = any(states(answer.answer, f) for f in item["facts"])
        cited = any(c.source.endswith(item["doc"]) for c in answer.citations)
        return "correct" if right and cited else "wrong"
    return "correct" if lihua_correct(answer.answer, item["reference"]) else "wrong"


# ---------------------------------------------------------------------------------------------- running


def open_kb(set_name: str, docs: Path) -> Any:
    from ragtune.kb import KnowledgeBase

    path = CACHE / f"kb-{set_name}"
    kb = KnowledgeBase.open(path, create=True)
    if not kb.stats().get("documents"):
        print(f"ingesting {docs} into {path} …", flush=True)
        report = kb.ingest([docs])
        print(report.to_dict(), flush=True)
    return kb


def served_llm() -> tuple[Any, Any]:
    """The bundled model behind tests/openai_server.py's OpenAI-compatible handler, and a client for it."""
    from http.server import ThreadingHTTPServer
    from threading import Thread

    sys.path.insert(0, str(REPO / "tests"))
    from openai_server import local_llm_handler

    from ragtune.llm import LocalLLM, OpenAICompatibleLLM

    local = LocalLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), local_llm_handler(local))
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return OpenAICompatibleLLM(local.name, base_url=url, timeout=300), server


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ragtune.settings import Settings

    items, docs = questions(args.set, args.limit, args.type)
    kb = open_kb(args.set, docs)
    if args.setting:
        from ragtune.settings import parse_overrides

        kb.settings = kb.settings.model_copy(update=parse_overrides(args.setting))
    has_modes = "answer_mode" in Settings.model_fields
    server = None
    if args.llm == "served":
        kb.llm, server = served_llm()
    modes = args.modes if has_modes else ["before"]
    results: dict[str, Any] = {}
    CACHE.mkdir(parents=True, exist_ok=True)
    for mode in modes:
        run_name = f"{args.set}-{args.label}-{mode}-{args.llm}"
        cache = CACHE / f"{run_name}.jsonl"
        done = {json.loads(line)["id"]: json.loads(line) for line in cache.read_text().splitlines()} \
            if cache.exists() else {}
        with cache.open("a", encoding="utf-8") as out:
            for n, item in enumerate(items, 1):
                if item["id"] in done:
                    continue
                options = {"answer_mode": mode} if has_modes else {}
                started = time.perf_counter()
                answer = kb.ask(item["q"], **options)
                row = {
                    "id": item["id"], "q": item["q"], "lang": item.get("lang", "en"), "type": item.get("type", ""),
                    "answer": answer.answer, "verdict": judge(item, answer, args.set),
                    "mode": getattr(answer, "mode", "before"), "cited": [c.source.rsplit("/", 1)[-1]
                                                                           for c in answer.citations],
                    "timings": answer.timings, "wall_ms": round((time.perf_counter() - started) * 1000, 1),
                    "load": loadavg()[0],
                }
                done[item["id"]] = row
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                print(f"{run_name} {n}/{len(items)} {row['verdict']:15} {row['mode']:10} {item['q'][:60]}",
                      flush=True)
        rows = [done[i["id"]] for i in items if i["id"] in done]
        results[mode] = summarise(rows)
    if server is not None:
        server.shutdown()
    kb.close()
    return results


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    verdicts = Counter(r["verdict"] for r in rows)
    answerable = sum(verdicts[v] for v in ("correct", "false_refusal", "wrong"))
    unanswerable = verdicts["correct_refusal"] + verdicts["invented"]
    summary: dict[str, Any] = {
        "answerable": answerable, "unanswerable": unanswerable, **{v: verdicts[v] for v in (
            "correct", "false_refusal", "wrong", "correct_refusal", "invented")},
        "correct_rate": round(verdicts["correct"] / answerable, 3) if answerable else None,
        "false_refusal_rate": round(verdicts["false_refusal"] / answerable, 3) if answerable else None,
        "refusal_rate_unanswerable": round(verdicts["correct_refusal"] / unanswerable, 3) if unanswerable else None,
        "paths": dict(Counter(r["mode"] for r in rows)),
        "latency_ms_p50": {s: round(statistics.median(v), 1) for s in STAGES
                           if (v := [r["timings"][s] for r in rows if s in r["timings"]])},
        "mean_load": round(statistics.mean(r["load"] for r in rows), 2) if rows else None,
    }
    for key in ("lang", "type"):
        groups = sorted({r[key] for r in rows if r.get(key)})
        if len(groups) > 1:
            summary[f"by_{key}"] = {g: dict(Counter(r["verdict"] for r in rows if r[key] == g)) for g in groups}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("fixtures", "lihua"), default="fixtures")
    parser.add_argument("--modes", nargs="+", default=["generative", "extractive", "auto"],
                        choices=("generative", "extractive", "auto"))
    parser.add_argument("--llm", choices=("local", "served"), default="local")
    parser.add_argument("--label", default="after", help="'before' when running main's pipeline")
    parser.add_argument("--limit", type=int, default=None, help="a stratified subset of this many questions")
    parser.add_argument("--type", action="append", default=[], choices=("Single", "Multi", "Null"),
                        help="lihua: only questions of this type (repeatable); give the run a --label")
    parser.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting (repeatable), e.g. no_repeat_ngram_size=0; give the run a --label")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    results = run(args)
    rows = [[mode, r["correct"], r["false_refusal"], r["wrong"], r["correct_refusal"], r["invented"],
             r["correct_rate"], r["latency_ms_p50"].get("total")] for mode, r in results.items()]
    print_table(rows, ["mode", "correct", "false refusal", "wrong", "correct refusal", "invented", "correct rate",
                       "p50 total ms"])
    out = args.out or RESULTS_DIR / f"answer_accuracy_{args.set}_{args.label}_{args.llm}.json"
    write_json(out, {
        "set": args.set, "label": args.label, "llm": args.llm, "limit": args.limit, "settings": args.setting,
        "match": "normalised containment, names with spaces ignored (see bench/answer_accuracy.py docstring)",
        "results": results,
        "wall_s": round(time.perf_counter() - started, 1), "loadavg": loadavg(), "machine": machine(),
    })


if __name__ == "__main__":
    main()
