"""Generation speed of the answering model and where `ask` spends its time.

Reports, for the local backend on the bundled SmolLM2-135M-Instruct: time to first token and decode
tokens/s on a short and a RAG-sized prompt, then end-to-end `ask` latency over the fixture questions
broken down into retrieval / prompt / generation / verification.

    .venv/bin/python bench/llm_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, Phase, loadavg, machine, peak_rss_mib, percentiles, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def generation(llm, prompt: str, max_tokens: int, runs: int) -> dict:
    """Time to first piece and decode rate (tokens after the first / time after the first)."""
    messages = [{"role": "user", "content": prompt}]
    ttft, rates, lengths = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        first = None
        pieces = []
        for piece in llm.stream(messages, max_tokens=max_tokens):
            if first is None:
                first = time.perf_counter()
            pieces.append(piece)
        end = time.perf_counter()
        tokens = llm.count_tokens("".join(pieces))
        ttft.append((first - start) * 1000)
        lengths.append(tokens)
        if tokens > 1 and end > first:
            rates.append((tokens - 1) / (end - first))
    return {"prompt_tokens": llm.count_tokens(prompt), "ttft_ms": percentiles(ttft),
            "decode_tokens_per_s": round(sum(rates) / len(rates), 1) if rates else None,
            "generated_tokens": lengths}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from ragtune.kb import KnowledgeBase

    start_load = loadavg()
    suite = json.loads((ROOT / "tests" / "fixtures" / "answers.json").read_text())
    with tempfile.TemporaryDirectory() as tmp, KnowledgeBase.open(Path(tmp) / "kb", create=True,
                                                                    num_threads=args.threads) as kb:
        kb.ingest(ROOT / "examples")
        with Phase() as load:
            llm = kb.llm
        short = generation(llm, "Write one sentence about the sea.", 64, args.runs)
        context = "\n\n".join(h.text for h in kb.search("refund policy travel hotel keys", k=5))
        rag = generation(llm, f"Sources:\n{context}\n\nQuestion: What is the refund window?", 64, args.runs)
        stages: dict[str, list[float]] = {}
        for item in suite["answerable"] + suite["unanswerable"]:
            answer = kb.ask(item["q"])
            for stage, ms in answer.timings.items():
                stages.setdefault(stage, []).append(ms)
    result = {
        "model": llm.name, "threads": args.threads, "machine": machine(),
        "load_model_s": round(load.wall, 2), "short_prompt": short, "rag_prompt": rag,
        "ask_ms_by_stage": {stage: percentiles(values) for stage, values in stages.items()},
        "questions": len(suite["answerable"]) + len(suite["unanswerable"]),
        "peak_rss_mib": peak_rss_mib(), "loadavg": {"start": start_load, "end": loadavg()},
        "llamacpp": "not measured: the 'llamacpp' extra compiles llama.cpp and is not installed here",
    }
    write_json(RESULTS_DIR / "llm_speed.json", result)
    print(json.dumps({k: result[k] for k in ("short_prompt", "rag_prompt", "ask_ms_by_stage")}, indent=1))


if __name__ == "__main__":
    main()
