"""What every training method shares: the run directory, the trainer arguments, loss guarding and run.json."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, RagtuneError
from ragtune.files import atomic_write_json
from ragtune.train.device import DevicePlan
from ragtune.train.recipe import Recipe

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


class TrainingError(RagtuneError):
    """Training failed or diverged (names the step, the learning rate, the precision and the data)."""


def run_directory(recipe: Recipe, *, resume: bool) -> Path:
    """``output.dir`` or the next free ``runs/<method>-NNN``; a used directory needs ``resume``."""
    if recipe.output.dir:
        path = Path(recipe.output.dir)
    else:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise TrainingError(
                "with several processes (torchrun, accelerate launch) set output.dir, so all of them agree on it"
            )
        if resume:
            raise TrainingError("--resume needs the run to continue: --set output.dir=runs/sft-001")
        runs = Path("runs")
        taken = {p.name for p in runs.glob(f"{recipe.method}-*")} if runs.is_dir() else set()
        number = 1
        while f"{recipe.method}-{number:03d}" in taken:
            number += 1
        path = runs / f"{recipe.method}-{number:03d}"
    checkpoints = complete_checkpoints(path) if path.is_dir() and resume else list(path.glob("checkpoint-*"))
    if resume and not checkpoints:
        raise TrainingError(f"--resume: {path} has no checkpoint-* directory to continue from — drop --resume")
    if not resume and (checkpoints or (path / RUN_FILE).exists()):
        raise TrainingError(f"{path} already holds a run — pass --resume to continue it, or set another output.dir")
    path.mkdir(parents=True, exist_ok=True)
    return path


def trainer_arguments(recipe: Recipe, plan: DevicePlan, run_dir: Path, *, has_eval: bool) -> dict[str, Any]:
    """The TrainingArguments fields every TRL config takes, resolved for this device."""
    train = recipe.train
    strategy = ("steps" if train.eval_steps else "epoch") if has_eval else "no"
    optimizer = train.optimizer
    if optimizer == "auto":
        optimizer = "paged_adamw_32bit" if recipe.model.finetune == "qlora" else "adamw_torch"
    arguments: dict[str, Any] = {
        "output_dir": str(run_dir),
        "num_train_epochs": train.epochs,
        "max_steps": train.max_steps,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler,
        "warmup_steps": train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        "per_device_train_batch_size": train.batch_size,
        "per_device_eval_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "max_grad_norm": train.max_grad_norm,
        "weight_decay": train.weight_decay,
        "optim": optimizer,
        "logging_steps": train.logging_steps,
        "logging_first_step": True,
        "seed": train.seed,
        "bf16": plan.precision == "bf16",
        "fp16": plan.precision == "fp16",
        "use_cpu": plan.use_cpu,
        "activation_checkpointing": plan.gradient_checkpointing,
        "eval_strategy": strategy,
        # Saving follows evaluation so the best checkpoint can be restored; without eval, once per epoch.
        "save_strategy": strategy if has_eval else ("steps" if train.eval_steps else "epoch"),
        "save_total_limit": train.save_total_limit,
        "load_best_model_at_end": has_eval and train.early_stopping_patience > 0,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
        "report_to": recipe.output.report_to or "none",
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
    }
    if train.eval_steps:
        arguments["eval_steps"] = train.eval_steps
        arguments["save_steps"] = train.eval_steps
    if train.distributed == "fsdp":
        arguments["fsdp"] = train.fsdp
    elif train.distributed == "deepspeed":
        arguments["deepspeed"] = train.deepspeed_config
    return arguments


def callbacks(recipe: Recipe, *, has_eval: bool) -> list[Any]:
    from transformers import EarlyStoppingCallback

    if has_eval and recipe.train.early_stopping_patience > 0:
        return [EarlyStoppingCallback(early_stopping_patience=recipe.train.early_stopping_patience)]
    return []


def time_limit(minutes: float, *, has_eval: bool) -> Any:
    """A trainer callback that stops training once ``minutes`` have passed since this invocation's training
    began (a resumed run gets the whole limit again), after evaluating and saving the step it stops at — so with
    ``load_best_model_at_end`` the best checkpoint, not merely the last, is what the run ends with. Callers that
    plan epochs from an estimated step time keep their time budget even when the estimate is wrong."""
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.stopped_at: int | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.stopped_at is None and time.monotonic() - self.started >= minutes * 60:
                self.stopped_at = state.global_step
                log.info("time limit of %.1f minutes reached at step %d of %d; stopping", minutes,
                         state.global_step, state.max_steps)
                control.should_training_stop = True
                control.should_save = True
                control.should_evaluate = has_eval

    return TimeLimit()


#: What to do about a diverged LLM run (the default advice of the loss guard).
LLM_ADVICE = ("lower train.learning_rate, use model.precision = 'fp32', check that row for empty or garbled text, "
              "and resume from the last checkpoint with --resume")
#: The same for the sentence-transformers trainers (embedder, reranker), which resume by default.
ENCODER_ADVICE = ("lower train.learning_rate, check that row for empty or garbled text, and run the same command "
                  "again to resume from the last checkpoint")


class _GuardedTraining:
    """Mixed into a trainer: stops on a NaN/inf loss with a diagnosis and logs tokens per second."""

    _ragtune_advice = LLM_ADVICE
    _ragtune_tokens = 0
    _ragtune_tokens_at_log = 0
    _ragtune_time_at_log = 0.0

    def training_step(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        import torch

        self._ragtune_tokens += _count_tokens(inputs)
        loss = super().training_step(model, inputs, *args, **kwargs)  # type: ignore[misc]
        if not torch.isfinite(loss).all():
            raise TrainingError(self._diagnose(inputs, float(loss.detach().float().mean())))
        return loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        if "loss" in logs:
            if not self._ragtune_time_at_log:
                self._ragtune_time_at_log = getattr(self, "_ragtune_started", now)
            elapsed = now - self._ragtune_time_at_log
            if elapsed > 0 and self._ragtune_tokens:
                logs["tokens_per_second"] = round((self._ragtune_tokens - self._ragtune_tokens_at_log) / elapsed, 1)
            self._ragtune_tokens_at_log, self._ragtune_time_at_log = self._ragtune_tokens, now
            if not math.isfinite(logs["loss"]):
                raise TrainingError(self._diagnose({}, logs["loss"]))
        super().log(logs, *args, **kwargs)  # type: ignore[misc]

    def _diagnose(self, inputs: dict[str, Any], loss: float) -> str:
        state, args = self.state, self.args  # type: ignore[attr-defined]
        try:
            lr = f"{self._get_learning_rate():.3g}"  # type: ignore[attr-defined]
        except Exception:
            lr = f"{args.learning_rate:.3g}"
        precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
        text = _decode_first(self.processing_class, inputs)  # type: ignore[attr-defined]
        row = f"; first sequence of the batch: {text!r}" if text else ""
        return (
            f"training diverged: loss is {loss} at step {state.global_step + 1} (learning rate {lr}, precision "
            f"{precision}){row} — {self._ragtune_advice}"
        )


def _count_tokens(inputs: dict[str, Any]) -> int:
    if not isinstance(inputs, Mapping):  # online RL trainers get raw rows here; they count their own tokens
        return 0
    # TRL names its masks attention_mask, prompt_/completion_attention_mask; sentence-transformers prefixes each
    # column's (anchor_attention_mask, positive_attention_mask, ...). Counting every mask covers both.
    masks = [v for k, v in inputs.items() if k.endswith("attention_mask") and hasattr(v, "sum")]
    if masks:
        return int(sum(int(m.sum()) for m in masks))
    ids: Any = inputs.get("input_ids")
    return int(ids.numel()) if hasattr(ids, "numel") else 0


def _decode_first(tokenizer: Any, inputs: dict[str, Any]) -> str:
    if not isinstance(inputs, Mapping):
        return ""
    for key in ("input_ids", "prompt_input_ids", "completion_input_ids", "chosen_input_ids",
                *(k for k in inputs if k.endswith("input_ids"))):
        ids = inputs.get(key)
        if ids is not None and tokenizer is not None and hasattr(tokenizer, "decode"):
            return str(tokenizer.decode(ids[0], skip_special_tokens=True))[:300]
    return ""


def guarded(trainer_class: type, advice: str = LLM_ADVICE) -> type:
    """``trainer_class`` (a transformers ``Trainer``) with the loss guard and the tokens/s metric; ``advice`` ends
    the error message of a diverged run."""
    return type(f"Guarded{trainer_class.__name__}", (_GuardedTraining, trainer_class), {"_ragtune_advice": advice})


def train_and_record(
    trainer: Any,
    *,
    recipe: Recipe,
    plan: DevicePlan,
    run_dir: Path,
    base_path: str,
    data: dict[str, Any],
    resume: bool,
) -> dict[str, Any]:
    """Train (resuming when asked), save the adapter or model at the run root and write run.json."""
    started = dt.datetime.now(dt.UTC)
    trainer._ragtune_started = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    except TrainingError:
        if trainer.is_world_process_zero():
            _write_run(run_dir, recipe, plan, base_path, data, started, status="diverged", metrics={},
                   history=trainer.state.log_history)
        raise
    trainer.save_model(str(run_dir))
    tokenizer = trainer.processing_class
    if tokenizer is not None and trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(run_dir))
    metrics: dict[str, Any] = {"train": dict(result.metrics), "global_step": trainer.state.global_step}
    if trainer.eval_dataset is not None:
        metrics["eval"] = trainer.evaluate()
    metrics["best_checkpoint"] = trainer.state.best_model_checkpoint
    metrics["world_size"] = trainer.args.world_size
    if not trainer.is_world_process_zero():
        return {"run_dir": str(run_dir), "metrics": metrics}
    return _write_run(run_dir, recipe, plan, base_path, data, started, status="finished", metrics=metrics,
                      history=trainer.state.log_history)


def _write_run(
    run_dir: Path,
    recipe: Recipe,
    plan: DevicePlan,
    base_path: str,
    data: dict[str, Any],
    started: dt.datetime,
    *,
    status: str,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    return write_run_record(
        run_dir, kind="llm", method=recipe.method, status=status, base_model=recipe.model.name,
        recipe=recipe.model_dump(mode="json"), data=data, device=asdict(plan), started=started, metrics=metrics,
        history=history, finetune=recipe.model.finetune, base_path=base_path, adapter=recipe.model.finetune != "full",
    )


def write_run_record(
    run_dir: Path,
    *,
    kind: str,
    method: str,
    status: str,
    base_model: str,
    recipe: dict[str, Any],
    data: dict[str, Any],
    device: dict[str, Any],
    started: dt.datetime,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    """Write ``run.json``, the one record shape of every trainer (LLM, embedder, reranker), and return it.

    ``kind`` is what was trained, ``method`` how; ``data`` counts what it learned from; ``metrics`` holds
    ``global_step``, ``best_checkpoint`` and the method's own measurements; ``extra`` adds kind-specific keys.
    """
    record = {
        "kind": kind,
        "run_dir": str(run_dir),
        "status": status,
        "method": method,
        # A relative directory is recorded absolute, so merge and eval find it from any working directory.
        "base_model": str(Path(base_model).resolve()) if Path(base_model).exists() else base_model,
        **extra,
        "recipe": recipe,
        "data": data,
        "device": device,
        "versions": versions(*(("sentence-transformers",) if kind != "llm" else ())),
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "metrics": metrics,
        "log_history": [{k: v for k, v in entry.items() if isinstance(v, (int, float, str))} for entry in history],
    }
    atomic_write_json(run_dir / RUN_FILE, record)
    return record


def run_encoder_training(
    trainer: Any, out: Path, *, kind: str, method: str, base_model: str, recipe: dict[str, Any],
    data: dict[str, Any], bf16: bool, resume_from: Path | None, evaluate: Callable[[], dict[str, float]],
    save: Callable[[], None], measure: str, before: dict[str, float],
    finished: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train a sentence-transformers trainer made with :func:`guarded` (the embedder's or the reranker's), from
    ``resume_from`` when given, then ``evaluate`` and ``save`` the model and write run.json; returns the record.
    A diverged run writes its run.json (status "diverged") before the error goes up. ``measure`` names the
    evaluation in the metrics: ``{measure}_before`` (``before``, measured by the caller) and ``{measure}_after``;
    ``finished`` adds the caller's own facts about the finished training (e.g. where a time limit stopped it)."""
    import torch

    started = dt.datetime.now(dt.UTC)

    def record(status: str, metrics: dict[str, Any]) -> dict[str, Any]:
        return write_run_record(
            out, kind=kind, method=method, status=status, base_model=base_model, recipe=recipe, data=data,
            device={"device": "cuda" if torch.cuda.is_available() else "cpu", "precision": "bf16" if bf16 else "fp32"},
            started=started, metrics=metrics, history=trainer.state.log_history,
        )

    clock = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except TrainingError:
        record("diverged", {"global_step": trainer.state.global_step})
        raise
    seconds = time.perf_counter() - clock
    after = evaluate()
    save()
    return record("finished", {
        "global_step": trainer.state.global_step, "best_checkpoint": trainer.state.best_model_checkpoint,
        "train_seconds": round(seconds, 1), f"{measure}_before": before, f"{measure}_after": after,
        **(finished() if finished is not None else {}),
    })

def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The run.json of a finished run directory."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise TrainingError(f"{run_dir}: no {RUN_FILE} — give a run directory written by 'ragtune train'")
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return record


def versions(*extra: str) -> dict[str, str]:
    """Installed versions of the training stack (and of ``extra`` packages), for run.json."""
    import importlib.metadata

    found = {}
    names = ("ragtune", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes", *extra)
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def step_plan(rows: int, batch_size: int, epochs: float, warmup_ratio: float, evals_per_epoch: int = 2
              ) -> tuple[int, int]:
    """(steps between evaluations, warm-up steps) of a run over ``rows`` training rows: the schedule the
    sentence-transformers trainers (embedder, reranker) share."""
    steps_per_epoch = max(1, -(-rows // batch_size))
    return max(1, steps_per_epoch // evals_per_epoch), int(warmup_ratio * steps_per_epoch * epochs)


def resumable_checkpoints(directory: Path, identity: dict[str, Any], resume: bool) -> list[Path]:
    """Checkpoints to resume from: only those of a run with the same recipe and data size. Another run's
    checkpoints in the same place are an error rather than silently mixed into this one."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "recipe.json"
    checkpoints = complete_checkpoints(directory) if resume else sorted(directory.glob("checkpoint-*"))
    if checkpoints and marker.is_file() and json.loads(marker.read_text()) != identity:
        raise ConfigError(f"{directory.parent} holds checkpoints of a run with another recipe or data — give a new "
                          f"--out directory, or delete {directory} to start over")
    marker.write_text(json.dumps(identity, indent=2))
    return checkpoints if resume else []


#: Files of which a checkpoint holds one when its weights were written: a full model, or a PEFT adapter.
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin",
            "model.safetensors.index.json", "pytorch_model.bin.index.json")


def complete_checkpoints(directory: Path) -> list[Path]:
    """The ``checkpoint-N`` folders of ``directory`` in step order, after deleting any a kill left half-written
    (no weights, or no trainer_state.json): the trainer resumes from the last folder, and a partial one would fail
    the resume ("no file named model.safetensors")."""
    complete = []
    for checkpoint in sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])):
        if (checkpoint / "trainer_state.json").is_file() and any((checkpoint / f).is_file() for f in _WEIGHTS):
            complete.append(checkpoint)
        else:
            log.warning("%s was left half-written by an interrupted run; deleting it and resuming from the one "
                        "before", checkpoint)
            shutil.rmtree(checkpoint, ignore_errors=True)
    return complete
