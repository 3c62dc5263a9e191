"""Wall time per step of the GRPO and PPO runs of recipes/grpo.toml (SmolLM2-135M, LoRA, the handbook questions
with verifiable rewards) on whatever device the recipe's plan picks: fp32 on this CPU, bf16 on a CUDA GPU.

The quality numbers of these runs (held-out right+cited rate, refusals, reward curves) come from
bench/train_rl_grpo.py; this script times the same recipe, for a few steps, per algorithm.

    OMP_NUM_THREADS=1 .venv/bin/python bench/train_rl_speed.py --steps 3                 # this CPU
    python3 bench/train_rl_speed.py --steps 30 --model SmolLM2-135M-Instruct.Q4_1.gguf    # a lent GPU
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

ROOT = Path(__file__).resolve().parents[1]


def run(algorithm: str, steps: int, model: str, work: Path, extra: list[str]) -> dict[str, Any]:
    from ragtune.train.recipe import load_recipe
    from ragtune.train.rl import train_rl

    recipe = load_recipe(ROOT / "recipes" / "grpo.toml", [
        f"model.name={model}", f"rl.algorithm={algorithm}", f"train.max_steps={steps}", "data.eval_path=",
        "data.eval_split=0", f"output.dir={work / algorithm}", "output.report_to=[]", f"train.eval_steps={steps}",
        *extra], method="grpo")
    started = time.perf_counter()
    record = train_rl(recipe)
    wall = time.perf_counter() - started
    logged = [h for h in record["log_history"] if "step_time" in h]
    step_times = [float(h["step_time"]) for h in logged]
    later = step_times[1:] or step_times  # the first step also compiles and warms the allocator
    return {
        "algorithm": algorithm, "steps": len(step_times), "wall_s": round(wall, 1),
        "step_s_median": round(statistics.median(later), 3), "step_s_first": round(step_times[0], 3),
        "device": record.get("device", {}),
        "mean_reward_first_last": [logged[0].get("reward"), logged[-1].get("reward")],
        "completion_mean_length": round(
            statistics.fmean(float(h.get("completions/mean_length", 0)) for h in logged), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--model", default="SmolLM2-135M-Instruct")
    ap.add_argument("--algorithm", action="append", help="grpo and/or ppo (default both)")
    ap.add_argument("--set", action="append", default=[], help="more recipe settings, key=value")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import torch

    report: dict[str, Any] = {
        "machine": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "settings": args.set, "runs": [],
    }
    with tempfile.TemporaryDirectory() as work:
        for algorithm in args.algorithm or ["grpo", "ppo"]:
            result = run(algorithm, args.steps, args.model, Path(work), args.set)
            print(json.dumps(result), flush=True)
            report["runs"].append(result)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
