"""SFT speed and memory on whatever device torch sees: LoRA in the device's default precision (bf16 on a GPU),
LoRA in fp32, and QLoRA (4-bit NF4 base, paged AdamW), each through ``ragtune.train.sft.train_sft``.

The model has SmolLM2-135M-Instruct's architecture and tokenizer; with ``--random-init`` its weights are
random (for a GPU machine that cannot receive the 98 MB GGUF): speed and memory do not depend on the
weights' values, only the losses do, so losses from such a run mean nothing.

    .venv/bin/python bench/train_gpu.py                     # bundled weights, this machine
    python3 bench/train_gpu.py --random-init CONFIG_DIR     # CONFIG_DIR: config.json + tokenizer files
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def build_random(config_dir: Path, target: Path) -> str:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(config_dir)
    AutoModelForCausalLM.from_config(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(target)
    return str(target)


def one_run(model: str, finetune: str, precision: str, steps: int, batch: int, work: Path) -> dict:
    import torch

    from ragtune.train.recipe import load_recipe
    from ragtune.train.sft import train_sft

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run_dir = work / f"{finetune}-{precision}"
    recipe = load_recipe(ROOT / "recipes" / "sft-lora.toml", [
        f"model.name={json.dumps(model)}", f"model.finetune={finetune}", f"model.precision={precision}",
        f"data.path={json.dumps(str(ROOT / 'recipes' / 'data' / 'handbook-sft.jsonl'))}",
        f"output.dir={json.dumps(str(run_dir))}", f"train.max_steps={steps}", f"train.batch_size={batch}",
        "train.grad_accum=1", "train.logging_steps=5", "data.max_seq_len=320", "data.eval_split=0",
        "output.report_to=[]",
    ], method="sft")
    started = time.perf_counter()
    record = train_sft(recipe)
    seconds = time.perf_counter() - started
    peak_mib = round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None
    steps_done = record["metrics"]["global_step"]
    rates = [h["tokens_per_second"] for h in record["log_history"] if "tokens_per_second" in h]
    return {
        "finetune": finetune,
        "requested_precision": precision,
        "plan": record["device"],
        "steps": steps_done,
        "batch_size": batch,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(record["metrics"]["train"]["train_runtime"] / max(1, steps_done), 3),
        # The first interval includes warm-up (kernel selection, allocator growth); the median of the rest is steadier.
        "tokens_per_second": rates,
        "tokens_per_second_median_after_first": statistics.median(rates[1:]) if len(rates) > 1 else None,
        "peak_gpu_memory_mib": peak_mib,
        "final_loss": next((h["loss"] for h in reversed(record["log_history"]) if "loss" in h), None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random-init", type=Path, help="build the model from this config + tokenizer directory")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_gpu.json")
    args = parser.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="ragtune-bench-gpu-"))
    if args.random_init:
        model = build_random(args.random_init, work / "model")
    else:
        from ragtune.llm.bundled import BUNDLED_SMOLLM2
        from ragtune.llm.local import resolve_model

        model = resolve_model(BUNDLED_SMOLLM2)
    runs = []
    for finetune, precision in (("lora", "auto"), ("lora", "fp32"), ("qlora", "auto")):
        try:
            runs.append(one_run(model, finetune, precision, args.steps, args.batch_size, work))
        except Exception as exc:  # one failing path must not hide the others' numbers
            error = f"{type(exc).__name__}: {exc}"
            runs.append({"finetune": finetune, "requested_precision": precision, "error": error})
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "bench": "train_gpu",
        "model": "SmolLM2-135M-Instruct architecture" + (" (random weights)" if args.random_init else ""),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
