"""Structured output: schema-valid rate over 50 extraction questions with the bundled model, with and without
retries (and how often the extracted value is right).

    flock /tmp/ragtune-heavy.lock nice -n 5 python bench/guard_structured.py [--backend bundled|openai] \
        [--decoding constrained|prompted]

--decoding prompted hides the bundled model's constrained JSON writer (ragtune.llm.constrained), so the model has
to write the JSON from the prompt as a remote model does (then, with retries, field by field).

The knowledge base: the 48 product notes of the injection fixtures without their planted instructions
(bench/guard_injection_data.py holds their facts) and examples/handbook. Questions: each note's question with the
schema {"product": string, "answer": string}, and two handbook questions with integer fields. Results:
bench/results/guard_structured_<backend>[_prompted].json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, loadavg, machine, write_json

ROOT = Path(__file__).resolve().parents[1]

NOTE_SCHEMA = {"type": "object", "properties": {"product": {"type": "string"}, "answer": {"type": "string"}},
               "required": ["product", "answer"], "additionalProperties": False}
HANDBOOK = [
    ("Within how many days can Starter and Team customers request a refund, and Enterprise customers?",
     {"type": "object", "properties": {"starter_team_days": {"type": "integer"},
                                       "enterprise_days": {"type": "integer"}},
      "required": ["starter_team_days", "enterprise_days"]}, {"starter_team_days": 14, "enterprise_days": 45}),
    ("How often must API keys be rotated, in days, and how many hours does the old key keep working?",
     {"type": "object", "properties": {"rotation_days": {"type": "integer"}, "old_key_hours": {"type": "integer"}},
      "required": ["rotation_days", "old_key_hours"]}, {"rotation_days": 90, "old_key_hours": 24}),
]


def questions(docs: Path) -> list[dict[str, Any]]:
    from guard_injection_data import EN_NOTES, ZH_NOTES

    out = []
    (docs / "notes").mkdir(parents=True)
    for i, (product, fact, question, answer) in enumerate([*EN_NOTES, *ZH_NOTES]):
        (docs / "notes" / f"{i:02d}.md").write_text(f"# {product}\n\n{fact}\n", encoding="utf-8")
        out.append({"question": question, "schema": NOTE_SCHEMA, "expect": answer})
    shutil.copytree(ROOT / "examples" / "handbook", docs / "handbook")
    out += [{"question": q, "schema": s, "expect": e} for q, s, e in HANDBOOK]
    return out


class Prompted:
    """The model without its constrained JSON writer: only chat, as a remote model."""

    def __init__(self, llm: Any) -> None:
        self.llm, self.name, self.context_window = llm, llm.name, llm.context_window

    def count_tokens(self, text: str) -> int:
        return int(self.llm.count_tokens(text))

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        return str(self.llm.chat(messages, **params))

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Any:
        return self.llm.stream(messages, **params)


def correct(data: Any, expect: Any) -> bool:
    if isinstance(expect, dict):
        return isinstance(data, dict) and all(data.get(k) == v for k, v in expect.items())
    return isinstance(data, dict) and str(expect).lower() in str(data.get("answer", "")).lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["bundled", "openai"], default="bundled")
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--decoding", choices=["constrained", "prompted"], default="constrained")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N questions (a quick look).")
    args = parser.parse_args()
    from ragtune.kb import KnowledgeBase
    from ragtune.structured import StructuredOutputError

    started = time.perf_counter()
    result: dict[str, Any] = {"backend": args.backend, "decoding": args.decoding}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        items = questions(tmp / "docs")[: args.limit]
        kb = KnowledgeBase.open(tmp / "kb", create=True, audit=False)
        if args.backend == "openai":
            sys.path.insert(0, str(ROOT / "tests" / "server"))
            from harness import fake_llm_server

            from ragtune.llm.openai import OpenAICompatibleLLM

            kb.llm = OpenAICompatibleLLM("fake-extractive", base_url=next(fake_llm_server()), max_retries=0)
        if args.decoding == "prompted":
            kb.llm = Prompted(kb.llm)
        kb.ingest(tmp / "docs")
        # One run with retries: the first attempt's validity is the rate without retries.
        rows = []
        t = time.perf_counter()
        for item in items:
            asked = time.perf_counter()
            try:
                answer = kb.ask_structured(item["question"], item["schema"], retries=args.retries)
                rows.append({"valid": not answer.refused, "attempts": answer.attempts, "data": answer.data,
                             "strategy": answer.strategy, "seconds": round(time.perf_counter() - asked, 2),
                             "correct": correct(answer.data, item["expect"]), "errors": answer.errors,
                             "fields_with_sources": len(answer.field_sources)})
            except StructuredOutputError as exc:
                rows.append({"valid": False, "attempts": exc.attempts, "errors": exc.errors,
                             "reply": exc.last_reply[:200], "correct": False,
                             "seconds": round(time.perf_counter() - asked, 2)})
            print(len(rows), rows[-1]["valid"], rows[-1]["attempts"], flush=True)
        n = len(rows)
        result.update(
            questions=n, retries=args.retries,
            schema_valid_rate_without_retries=round(sum(r["valid"] and r["attempts"] == 1 for r in rows) / n, 4),
            schema_valid_rate_with_retries=round(sum(r["valid"] for r in rows) / n, 4),
            correct_rate=round(sum(r["correct"] for r in rows) / n, 4),
            mean_attempts=round(sum(r["attempts"] for r in rows) / n, 3),
            strategies={k: sum(r.get("strategy") == k for r in rows) for k in ("constrained", "json", "fields")},
            seconds_per_question_p50=sorted(r["seconds"] for r in rows)[n // 2],
            answer_seconds=round(time.perf_counter() - t, 1), rows=rows,
        )
        print({k: v for k, v in result.items() if k != "rows"})
        kb.close()
    suffix = "_prompted" if args.decoding == "prompted" else ""
    write_json(RESULTS_DIR / f"guard_structured_{args.backend}{suffix}.json", {
        "command": f"python bench/guard_structured.py --backend {args.backend} --decoding {args.decoding} "
                   f"--retries {args.retries}", **result,
        "seconds": round(time.perf_counter() - started, 1), "loadavg": loadavg(), "machine": machine()})


if __name__ == "__main__":
    main()
