"""Best-of-4 with the reward model: the held-out handbook table of bench/train_rl_grpo.py (right+cited, false and
correct refusals) for greedy answers against the best of 4 chosen by the reward model, and what it adds to
the latency of an answer through the knowledge base's pipeline.

Part 1 (the table): for each held-out question the policy (default: the bundled SmolLM2-135M) answers greedily
and samples 3 more answers (temperature 0.7) from the same sources; the reward model picks one. For
comparison the same 4 candidates are also picked by the verifiable rewards an inference-time checker can
compute without a reference (citation support + length), and by an oracle that knows the reference (the upper
bound of picking among these 4).

Part 2 (latency): the same questions asked of a knowledge base built from examples/handbook, once with
``kb.ask`` (greedy) and once with ``best_of_n(n=4)``; p50/mean seconds of each and the added time.

Needs the reward model of bench/train_rl_reward.py (~/.cache/ragtune/bench/rl/reward).

    flock /tmp/ragtune-heavy.lock nice -n 5 python bench/train_rl_best_of.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, loadavg, machine, peak_rss_mib, percentiles, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "recipes" / "data"
WORK = Path.home() / ".cache" / "ragtune" / "bench" / "rl"


def candidates(model: Any, tokenizer: Any, rows: list[dict[str, Any]], n: int, temperature: float,
               max_new_tokens: int, cache: Path) -> tuple[list[list[str]], dict[str, float]]:
    """For each row: the greedy answer, then ``n - 1`` sampled ones (cached in ``cache``)."""
    import torch

    from ragtune.llm.local import format_chat

    if cache.is_file():
        saved = json.loads(cache.read_text())
        return saved["answers"], saved["seconds"]
    torch.manual_seed(0)
    answers, greedy_s, sampled_s = [], 0.0, 0.0
    for number, row in enumerate(rows, 1):
        inputs = tokenizer(format_chat(tokenizer, row["prompt"]), return_tensors="pt", add_special_tokens=False)
        width = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            t = time.perf_counter()
            greedy = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
            greedy_s += time.perf_counter() - t
            t = time.perf_counter()
            sampled = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                     top_p=1.0, top_k=0, num_return_sequences=n - 1,
                                     pad_token_id=tokenizer.pad_token_id)
            sampled_s += time.perf_counter() - t
        texts = [tokenizer.decode(seq[width:], skip_special_tokens=True).strip() for seq in [greedy[0], *sampled]]
        answers.append(texts)
        print(f"  {number}/{len(rows)} sampled", flush=True)
    seconds = {"greedy_per_question": round(greedy_s / len(rows), 3),
               "sampling_per_question": round(sampled_s / len(rows), 3)}
    cache.write_text(json.dumps({"answers": answers, "seconds": seconds}, ensure_ascii=False, indent=1))
    return answers, seconds


def pick(scores: list[list[float]]) -> list[int]:
    """Index of the best-scored candidate per question (the earliest, i.e. the greedy one, on a tie)."""
    return [max(range(len(s)), key=lambda i: (s[i], -i)) for s in scores]


def part_one(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from ragtune.llm.bundled import BUNDLED_SMOLLM2
    from ragtune.llm.local import chat_template, resolve_model
    from ragtune.train.best_of import checks
    from ragtune.train.merge import load_trained
    from ragtune.train.model import load_tokenizer
    from ragtune.train.recipe import RewardsSection
    from ragtune.train.reward import RewardModel
    from ragtune.train.rewards import Rewards, grade_table
    from ragtune.train.rl import samples_of

    if args.policy == BUNDLED_SMOLLM2:
        from transformers import AutoModelForCausalLM

        path = resolve_model(BUNDLED_SMOLLM2)
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path), load_tokenizer(path)
    else:
        model, tokenizer = load_trained(args.policy)
    tokenizer.chat_template = chat_template(tokenizer)
    model.eval()
    tag = "base" if args.policy == BUNDLED_SMOLLM2 else Path(args.policy).name
    answers, gen_seconds = candidates(model, tokenizer, rows, args.n, args.temperature, 64,
                                      args.work / f"best-of-{args.n}-{tag}.json")
    flat_rows = [row for row in rows for _ in range(args.n)]
    flat_samples = samples_of(flat_rows, [a for group in answers for a in group])

    def grouped(values: list[float]) -> list[list[float]]:
        return [values[i * args.n:(i + 1) * args.n] for i in range(len(rows))]

    reward_model = RewardModel(args.reward)
    t = time.perf_counter()
    rm_scores = grouped(reward_model.score(flat_samples))
    score_seconds = (time.perf_counter() - t) / len(rows)
    # What a checker can compute at inference, without a reference or an answerability label (--reward checks).
    checker = checks()
    oracle = Rewards.from_section(RewardsSection())
    choices = {
        "greedy": [0] * len(rows),
        f"best_of_{args.n}_reward_model": pick(rm_scores),
        f"best_of_{args.n}_verifiable_checks": pick(grouped(checker.total(flat_samples))),
        f"best_of_{args.n}_oracle": pick(grouped(oracle.total(flat_samples))),
    }
    table = {}
    for name, chosen in choices.items():
        picked = samples_of(rows, [answers[i][c] for i, c in enumerate(chosen)])
        table[name] = {**grade_table(picked), "mean_reward": round(statistics.fmean(oracle.total(picked)), 4),
                       "replaced_greedy": round(sum(c != 0 for c in chosen) / len(chosen), 4)}
    return {
        "policy": args.policy,
        "table": table,
        "seconds": {**gen_seconds, "reward_model_scoring_per_question": round(score_seconds, 3)},
        "examples": [
            {"question": row["question"], "greedy": group[0], "chosen_by_reward_model": group[c]}
            for row, group, c in list(zip(rows, answers, choices[f"best_of_{args.n}_reward_model"], strict=True))
            if c != 0
        ][:6],
    }


def part_two(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from ragtune.kb import KnowledgeBase
    from ragtune.train.best_of import best_of_n
    from ragtune.train.reward import RewardModel

    reward_model = RewardModel(args.reward)
    questions = [r["question"] for r in rows][: args.latency_questions]
    with tempfile.TemporaryDirectory() as folder, KnowledgeBase.open(folder, create=True) as kb:
        kb.ingest(ROOT / "examples" / "handbook")
        kb.ask(questions[0])  # load the models before timing
        plain, best, score_ms, chosen = [], [], [], []
        for question in questions:
            t = time.perf_counter()
            kb.ask(question)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            outcome = best_of_n(kb, question, reward_model, n=args.n, temperature=args.temperature)
            best.append(time.perf_counter() - t)
            score_ms.append(outcome.timings["score"])
            chosen.append(outcome.chosen)
    added = [b - p for b, p in zip(best, plain, strict=True)]
    return {
        "questions": len(questions),
        "ask_s": percentiles(plain),
        f"best_of_{args.n}_s": percentiles(best),
        "added_s": percentiles(added),
        "reward_model_scoring_ms": percentiles(score_ms),
        "replaced_greedy": round(sum(c != 0 for c in chosen) / len(chosen), 4),
        "note": "kb.ask refuses off-topic questions before generating; those cost best-of-n almost nothing",
    }


def main() -> None:
    from ragtune.llm.bundled import BUNDLED_SMOLLM2

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--reward", type=Path, default=WORK / "reward", help="reward model run directory")
    parser.add_argument("--policy", default=BUNDLED_SMOLLM2, help="model that answers (or a run directory)")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--latency-questions", type=int, default=12)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "train_rl_best_of.json")
    args = parser.parse_args()

    import torch

    from ragtune.train.rl import question_rows

    rows = question_rows(DATA / "handbook-rl-heldout.jsonl")
    args.work.mkdir(parents=True, exist_ok=True)
    table = part_one(args, rows)
    print(json.dumps(table["table"], indent=1), flush=True)
    latency = part_two(args, rows)
    print(json.dumps(latency, indent=1), flush=True)
    write_json(args.out, {
        "bench": "train_rl_best_of",
        "command": "flock /tmp/ragtune-heavy.lock nice -n 5 python bench/train_rl_best_of.py",
        "reward_model": str(args.reward),
        "n": args.n,
        "temperature": args.temperature,
        "held_out": table,
        "pipeline_latency": latency,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": peak_rss_mib(),
        "loadavg": loadavg(),
        "machine": machine(),
    })


if __name__ == "__main__":
    main()
