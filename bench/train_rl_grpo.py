"""GRPO with verifiable rewards on SmolLM2-135M over the handbook knowledge base, against an SFT adapter trained
on the same questions, on this CPU.

Training questions: recipes/data/handbook-rl.jsonl (EN + ZH, sources from a knowledge base built from
examples/handbook, some unanswerable). Held out: recipes/data/handbook-rl-heldout.jsonl (facts and
unanswerable questions training never shows). Every model answers the held-out questions greedily and is
graded: right+cited (contains the reference and cites the source that holds it), false refusals (answerable,
refused), correct refusals (unanswerable, refused), mean reward.

Models: the base; SFT (recipes/sft-lora.toml on the training questions' reference answers); GRPO from the
base (recipes/grpo.toml); with --from-sft also GRPO starting from the merged SFT model. Runs live under
~/.cache/ragtune/bench/rl and resume; finished stages are not trained again. Reward curves go to
bench/results/train_rl_grpo_rewards.png.

    flock /tmp/ragtune-heavy.lock nice -n 5 python bench/train_rl_grpo.py --max-steps 150
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, loadavg, machine, peak_rss_mib, write_json  # noqa: E402
from train_data import write_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "recipes" / "data"
WORK = Path.home() / ".cache" / "ragtune" / "bench" / "rl"


def finished(run_dir: Path) -> dict[str, Any] | None:
    from ragtune.train.run import RUN_FILE, read_run

    if (run_dir / RUN_FILE).is_file():
        record = read_run(run_dir)
        if record.get("status") == "finished":
            return record
    return None


def evaluate(name: str, model: Any, tokenizer: Any, rows: list[dict[str, Any]], rewards: Any, cache: Path,
             max_new_tokens: int) -> dict[str, Any]:
    """Held-out grades of one model, cached in ``cache`` (delete it to grade again)."""
    from ragtune.llm.local import chat_template
    from ragtune.train.rl import evaluate_policy

    if cache.is_file():
        return dict(json.loads(cache.read_text()))
    print(f"grading {name} on {len(rows)} held-out questions …", flush=True)
    tokenizer.chat_template = chat_template(tokenizer)
    started = time.perf_counter()
    report = evaluate_policy(model, tokenizer, rows, rewards, max_new_tokens=max_new_tokens)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["loadavg"] = loadavg()
    cache.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, ensure_ascii=False), flush=True)
    return report


def train_sft_adapter(work: Path, train_rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    from ragtune.train.recipe import load_recipe
    from ragtune.train.sft import train_sft

    run_dir = work / "sft"
    record = finished(run_dir)
    if record:
        return record
    data = work / "sft.jsonl"
    write_jsonl(data, [{"messages": [*r["prompt"], {"role": "assistant", "content": r["reference"]}]}
                       for r in train_rows])
    recipe = load_recipe(ROOT / "recipes" / "sft-lora.toml", [
        f"data.path={json.dumps(str(data))}", f"output.dir={json.dumps(str(run_dir))}", "output.report_to=[]",
        f"train.epochs={args.sft_epochs}", "train.batch_size=4", "train.grad_accum=2", "train.logging_steps=2",
        "data.eval_split=0.1", "data.max_seq_len=512",
    ], method="sft")
    return train_sft(recipe, resume=any(run_dir.glob("checkpoint-*")))


def train_grpo(work: Path, name: str, model_name: str, args: argparse.Namespace, rewards: Any) -> dict[str, Any]:
    from ragtune.train.recipe import load_recipe
    from ragtune.train.rl import train_rl

    run_dir = work / name
    record = finished(run_dir)
    if record:
        return record
    recipe = load_recipe(ROOT / "recipes" / "grpo.toml", [
        f"model.name={json.dumps(model_name)}", f"output.dir={json.dumps(str(run_dir))}", "output.report_to=[]",
        f"data.path={json.dumps(str(DATA / 'handbook-rl.jsonl'))}", 'data.eval_path=""', "data.eval_split=0.0",
        f"train.max_steps={args.max_steps}", *args.set,
    ], method="grpo")
    return train_rl(recipe, rewards, resume=any(run_dir.glob("checkpoint-*")))


def curves(history: list[dict[str, Any]]) -> dict[str, list[float]]:
    keys = sorted({k for h in history for k in h
                   if k == "reward" or (k.startswith("rewards/") and k.endswith("/mean"))})
    return {key: [round(float(h[key]), 4) for h in history if key in h] for key in keys}


def moving_average(values: list[float], window: int = 10) -> list[float]:
    return [statistics.fmean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))]


def plot(runs: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({key for run in runs.values() for key in run})
    columns = 3
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.flat, names, strict=False):
        for label, run in runs.items():
            if key in run:
                steps = range(1, len(run[key]) + 1)
                (line,) = ax.plot(steps, moving_average(run[key]), label=label)
                ax.plot(steps, run[key], color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.set_title(key.replace("rewards/", "").replace("/mean", "") + " (mean per step)", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("GRPO on SmolLM2-135M, handbook questions (EN+ZH): rewards of sampled answers, 10-step average",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def training_summary(record: dict[str, Any]) -> dict[str, Any]:
    history = record["log_history"]
    step_times = [h["step_time"] for h in history if "step_time" in h]
    steps = record["metrics"]["global_step"]
    runtime = record["metrics"]["train"]["train_runtime"]
    return {
        "steps": steps,
        "train_runtime_s": round(runtime, 1),
        "seconds_per_step": round(runtime / max(steps, 1), 2),
        "step_time_mean_s": round(statistics.fmean(step_times), 2) if step_times else None,
        "completion_tokens_mean": round(statistics.fmean(h["completions/mean_length"] for h in history
                                                         if "completions/mean_length" in h), 1),
        "device": record["device"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--sft-epochs", type=float, default=3.0)
    parser.add_argument("--from-sft", action="store_true", help="also run GRPO from the merged SFT model")
    parser.add_argument("--set", action="append", default=[], help="GRPO recipe override, e.g. rl.beta=0.0")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "train_rl_grpo.json")
    args = parser.parse_args()

    import torch

    from ragtune.llm.bundled import BUNDLED_SMOLLM2
    from ragtune.llm.local import resolve_model
    from ragtune.train.merge import load_trained, merge_adapter
    from ragtune.train.model import load_tokenizer
    from ragtune.train.recipe import RewardsSection, load_recipe
    from ragtune.train.rewards import Rewards
    from ragtune.train.rl import question_rows

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    section = load_recipe(ROOT / "recipes" / "grpo.toml", args.set, method="grpo").rewards
    rewards = Rewards.from_section(section)
    graded = Rewards.from_section(RewardsSection())  # held-out grades always with the default weights
    train_rows = question_rows(DATA / "handbook-rl.jsonl")
    held_rows = question_rows(DATA / "handbook-rl-heldout.jsonl")
    max_new = 64
    results: dict[str, Any] = {}
    timings: dict[str, Any] = {}

    from transformers import AutoModelForCausalLM

    base_path = resolve_model(BUNDLED_SMOLLM2)
    results["base"] = evaluate("base", AutoModelForCausalLM.from_pretrained(base_path), load_tokenizer(base_path),
                               held_rows, graded, work / "eval-base.json", max_new)

    started = time.perf_counter()
    sft = train_sft_adapter(work, train_rows, args)
    timings["sft"] = {"steps": sft["metrics"]["global_step"],
                      "train_runtime_s": round(sft["metrics"]["train"]["train_runtime"], 1),
                      "this_invocation_s": round(time.perf_counter() - started, 1)}
    model, tokenizer = load_trained(work / "sft")
    results["sft"] = evaluate("sft", model, tokenizer, held_rows, graded, work / "eval-sft.json", max_new)

    runs = {"grpo": BUNDLED_SMOLLM2}
    if args.from_sft:
        merged = work / "sft-merged"
        if not (merged / "config.json").is_file():
            merge_adapter(work / "sft", merged)
        runs["sft+grpo"] = str(merged)
    reward_curves = {}
    for name, start in runs.items():
        started = time.perf_counter()
        folder = name.replace("+", "-")
        record = train_grpo(work, folder, start, args, rewards)
        timings[name] = {**training_summary(record), "this_invocation_s": round(time.perf_counter() - started, 1)}
        reward_curves[name] = curves(record["log_history"])
        model, tokenizer = load_trained(work / folder)
        results[name] = evaluate(name, model, tokenizer, held_rows, graded, work / f"eval-{folder}.json", max_new)
    png = RESULTS_DIR / "train_rl_grpo_rewards.png"
    plot(reward_curves, png)

    keys = ("right_and_cited", "right", "cited", "false_refusals", "correct_refusals", "mean_reward")
    result = {
        "bench": "train_rl_grpo",
        "command": "flock /tmp/ragtune-heavy.lock nice -n 5 python bench/train_rl_grpo.py "
                   + " ".join([f"--max-steps {args.max_steps}", *(["--from-sft"] if args.from_sft else []),
                               *(f"--set {s}" for s in args.set)]),
        "model": BUNDLED_SMOLLM2,
        "train_questions": len(train_rows),
        "held_out_questions": {"total": len(held_rows), "answerable": sum(r["answerable"] for r in held_rows),
                               "zh": sum(r["language"] == "zh" for r in held_rows)},
        "rewards_trained_with": rewards.weights,
        "graded_with": "default weights; right = contains the reference (every number, >= half its terms), "
                       "cited = cites the source that holds it; greedy answers, at most 64 tokens",
        "table": {name: {k: report.get(k) for k in keys} for name, report in results.items()},
        "rewards_by_model": {name: report.get("rewards") for name, report in results.items()},
        "training": timings,
        "reward_curves": reward_curves,
        "reward_curves_png": str(png.relative_to(ROOT)),
        "samples": {name: report.get("samples") for name, report in results.items()},
        "gpu": "no GPU machine was lent to this task: the GPU speed of this run was not measured",
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": peak_rss_mib(),
        "loadavg": loadavg(),
        "machine": machine(),
    }
    write_json(args.out, result)
    print(json.dumps(result["table"], indent=1))


if __name__ == "__main__":
    main()
