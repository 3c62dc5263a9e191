"""LoRA SFT of the bundled SmolLM2-135M-Instruct on cited answers from the example handbook, on this CPU.

Trains on RAG prompts (three numbered sources) whose answers end with the right citation ("... [2]."),
then compares the base and the tuned model on held-out facts the training never saw: ROUGE-L against the
reference answer, format accuracy (the answer ends with a citation) and citation accuracy (it cites the
source that holds the answer), and perplexity on the reference answers. Also reports the loss curve,
seconds per step, tokens/s and peak memory.

    OMP_NUM_THREADS=2 .venv/bin/python bench/train_sft.py            # ~10 min on 2 contended cores
    .venv/bin/python bench/train_sft.py --train-examples 48 --eval-examples 8   # quick look
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, loadavg, machine, peak_rss_mib, write_json  # noqa: E402
from train_data import CITATION_AT_END, cited_examples, split_by_fact  # noqa: E402

from ragtune.jsonl import write_jsonl  # noqa: E402

HELD_OUT_FACTS = {12, 13, 14}  # onboarding facts: their sources and answers appear only in held-out prompts


def answer_quality(answers: list[str], pairs: list[tuple[list[dict[str, str]], str]]) -> dict[str, float]:
    from ragtune.evaluate.lm import rouge_l

    references = [ref for _, ref in pairs]
    formatted = [bool(CITATION_AT_END.search(a)) for a in answers]
    right_source = []
    for answer, reference in zip(answers, references, strict=True):
        expected = CITATION_AT_END.search(reference)
        cited = re.findall(r"\[(\d+)\]", answer)
        right_source.append(bool(expected and cited and cited[-1] == expected.group(1)))
    return {
        "rouge_l": round(statistics.fmean(rouge_l(a, r) for a, r in zip(answers, references, strict=True)), 4),
        "format_accuracy": round(statistics.fmean(formatted), 4),
        "citation_accuracy": round(statistics.fmean(right_source), 4),
    }


def evaluate(model, tokenizer, pairs, max_new_tokens: int) -> tuple[dict[str, float], list[str]]:
    from ragtune.evaluate.lm import perplexity
    from ragtune.train.data import encode_chat
    from ragtune.train.evaluation import generate_answers

    started = time.perf_counter()
    answers = generate_answers(model, tokenizer, [p for p, _ in pairs], max_new_tokens)
    sequences = [encode_chat(tokenizer, [*p, {"role": "assistant", "content": r}]) for p, r in pairs]
    scores = answer_quality(answers, pairs)
    scores["perplexity"] = round(perplexity(model, sequences), 4)
    scores["seconds"] = round(time.perf_counter() - started, 1)
    return scores, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-examples", type=int, default=120)
    parser.add_argument("--eval-examples", type=int, default=24)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "train_sft.json")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ragtune.llm.bundled import BUNDLED_SMOLLM2
    from ragtune.llm.local import resolve_model
    from ragtune.train.evaluation import held_out_pairs
    from ragtune.train.merge import load_trained
    from ragtune.train.model import load_tokenizer
    from ragtune.train.recipe import load_recipe
    from ragtune.train.sft import train_sft

    train_rows, held_rows = split_by_fact(cited_examples(seed=0, variants=4), HELD_OUT_FACTS)
    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-sft-"))
    train_file, held_file = work / "train.jsonl", work / "held.jsonl"
    write_jsonl(train_file, [{"messages": r["messages"]} for r in train_rows[: args.train_examples]])
    write_jsonl(held_file, [{"messages": r["messages"]} for r in held_rows[: args.eval_examples]])
    pairs = held_out_pairs(held_file)

    base_path = resolve_model(BUNDLED_SMOLLM2)
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(base_path)
    print(f"base model on {len(pairs)} held-out examples …", flush=True)
    before, before_answers = evaluate(AutoModelForCausalLM.from_pretrained(base_path), tokenizer, pairs,
                                      args.max_new_tokens)
    print(json.dumps(before), flush=True)

    run_dir = work / "run"
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "sft-lora.toml", [
        f"data.path={json.dumps(str(train_file))}", f"output.dir={json.dumps(str(run_dir))}",
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", "train.grad_accum=1",
        f"train.learning_rate={args.learning_rate}", "train.logging_steps=5", "data.max_seq_len=320",
        "data.eval_split=0.1", "output.report_to=[]",
    ], method="sft")
    started = time.perf_counter()
    record = train_sft(recipe)
    train_seconds = time.perf_counter() - started
    history = record["log_history"]
    steps = record["metrics"]["global_step"]

    tuned_model, tuned_tokenizer = load_trained(run_dir)
    print("tuned model …", flush=True)
    after, after_answers = evaluate(tuned_model, tuned_tokenizer, pairs, args.max_new_tokens)
    print(json.dumps(after), flush=True)

    result = {
        "bench": "train_sft",
        "model": BUNDLED_SMOLLM2,
        "method": "LoRA r=16 alpha=32 on q/k/v/o/gate/up/down (recipes/sft-lora.toml)",
        "task": "one-sentence answer ending with the citation of the source that holds it, 3 numbered sources",
        "train_examples": record["data"]["train_examples"],
        "eval_split_examples": record["data"]["eval_examples"],
        "held_out_examples": len(pairs),
        "held_out": "facts never seen in training (onboarding guide); the model must copy and cite",
        "settings": {
            "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "max_seq_len": 320, "precision": record["device"]["precision"], "device": record["device"]["device"],
            "torch_threads": torch.get_num_threads(),
        },
        "training": {
            "steps": steps,
            "seconds": round(train_seconds, 1),
            "seconds_per_step": round(record["metrics"]["train"]["train_runtime"] / max(steps, 1), 2),
            "tokens_per_second": [h["tokens_per_second"] for h in history if "tokens_per_second" in h],
            "loss_curve": [{"step": h["step"], "loss": round(h["loss"], 4)} for h in history if "loss" in h],
            "eval_loss": record["metrics"].get("eval", {}).get("eval_loss"),
        },
        "before": before,
        "after": after,
        "samples": [
            {"reference": r, "base": b, "tuned": t}
            for (_, r), b, t in list(zip(pairs, before_answers, after_answers, strict=True))[:4]
        ],
        "peak_rss_mib": peak_rss_mib(),
        "loadavg": loadavg(),
        "machine": machine(),
    }
    write_json(args.out, result)


if __name__ == "__main__":
    main()
