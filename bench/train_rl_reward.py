"""Reward model on the handbook preference pairs (EN + ZH): pairwise accuracy on held-out pairs (facts the
training never shows) by kind and language, against a length-only baseline and against the verifiable rewards
(ragtune's own checks, no model) ranking the same pairs.

Trains recipes/reward.toml (SmolLM2-135M + score head, LoRA) on recipes/data/handbook-pairs.jsonl. The run
directory is kept (default ~/.cache/ragtune/bench/rl/reward), so an interrupted run resumes and a finished one
is only scored again.

    flock /tmp/ragtune-heavy.lock nice -n 5 python bench/train_rl_reward.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, loadavg, machine, peak_rss_mib, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "recipes" / "data"
WORK = Path.home() / ".cache" / "ragtune" / "bench" / "rl"


def verifiable_ranking(pairs_file: Path) -> dict[str, dict[str, float]]:
    """Pairwise accuracy of the verifiable rewards (default weights, no reward model) on the pairs, by kind."""
    from ragtune.train.recipe import RewardsSection
    from ragtune.train.rewards import Rewards, Sample

    questions = {}
    for name in ("handbook-rl.jsonl", "handbook-rl-heldout.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            questions[row["question"]] = row
    rewards = Rewards.from_section(RewardsSection())
    wins: dict[str, list[float]] = {}
    for line in pairs_file.read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        user = pair["prompt"][-1]["content"]
        row = questions[user.split("\n")[0].split("：" if pair["language"] == "zh" else ": ", 1)[1]]
        chosen, rejected = rewards.total([
            Sample(row["question"], pair[side], tuple(row["contexts"]), row["reference"], row["answerable"],
                   row["source"], row["language"]) for side in ("chosen", "rejected")])
        win = 0.5 if chosen == rejected else float(chosen > rejected)
        for key in ("all", pair["kind"], pair["language"]):
            wins.setdefault(key, []).append(win)
    return {key: {"pairs": len(v), "accuracy": round(statistics.fmean(v), 4)} for key, v in wins.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=WORK / "reward", help="run directory (resumed if it exists)")
    parser.add_argument("--set", action="append", default=[], help="recipe override, e.g. train.epochs=1")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "train_rl_reward.json")
    args = parser.parse_args()

    import torch

    from ragtune.train.recipe import load_recipe
    from ragtune.train.reward import score_pairs, train_reward
    from ragtune.train.run import RUN_FILE, read_run

    # The checkpoint is chosen on a split of the training pairs: the held-out pairs are only scored.
    overrides = [f"output.dir={json.dumps(str(args.run))}",
                 f"data.path={json.dumps(str(DATA / 'handbook-pairs.jsonl'))}", "output.report_to=[]", *args.set]
    recipe = load_recipe(ROOT / "recipes" / "reward.toml", overrides, method="reward")
    started = time.perf_counter()
    finished = (args.run / RUN_FILE).is_file() and read_run(args.run).get("status") == "finished"
    # A finished run is only scored again; an interrupted one continues from its last checkpoint.
    record = read_run(args.run) if finished else train_reward(recipe, resume=any(args.run.glob("checkpoint-*")))
    wall = time.perf_counter() - started
    held = DATA / "handbook-pairs-heldout.jsonl"
    print("scoring held-out pairs …", flush=True)
    report = score_pairs(args.run, held)
    ranking = verifiable_ranking(held)
    train_runtime = record["metrics"]["train"]["train_runtime"]
    steps = record["metrics"]["global_step"]
    result = {
        "bench": "train_rl_reward",
        "command": "flock /tmp/ragtune-heavy.lock nice -n 5 python bench/train_rl_reward.py "
                   + " ".join(f"--set {s}" for s in args.set),
        "recipe": "recipes/reward.toml (SmolLM2-135M-Instruct + score head, LoRA r=16 on every linear layer)",
        "train_pairs": record["data"]["train_examples"],
        "held_out_pairs": report["pairs"],
        "held_out": "pairs of facts (and unanswerable questions) the training pairs never show, EN and ZH",
        "reward_model": {key: report[key] for key in ("accuracy", "mean_margin")},
        "length_baseline": report["length_baseline"],
        "verifiable_rewards": ranking,
        "by_kind": report.get("by_kind"),
        "by_language": report.get("by_language"),
        "training": {
            "steps": steps,
            "train_runtime_s": round(train_runtime, 1),
            "seconds_per_step": round(train_runtime / max(steps, 1), 2),
            "this_invocation_s": round(wall, 1),
            "pairs_per_step": recipe.train.batch_size * recipe.train.grad_accum,
            "eval": {k: round(v, 4) for k, v in record["metrics"].get("eval", {}).items()
                     if k in ("eval_loss", "eval_accuracy", "eval_margin")},
            "curve": [{k: h[k] for k in ("step", "loss", "eval_loss", "eval_accuracy") if k in h}
                      for h in record["log_history"] if "loss" in h or "eval_accuracy" in h],
            "device": record["device"],
        },
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": peak_rss_mib(),
        "loadavg": loadavg(),
        "machine": machine(),
    }
    write_json(args.out, result)
    print(json.dumps({"reward_model": result["reward_model"], "length": report["length_baseline"],
                      "verifiable": ranking["all"]}, indent=1))


if __name__ == "__main__":
    main()
