"""Device-aware training settings: what a recipe's precision, checkpointing and sharding become on this machine."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ragtune.errors import ConfigError
from ragtune.train.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevicePlan:
    """The resolved settings; ``notes`` say what was changed from the recipe and why (logged and kept in run.json)."""

    device: str
    precision: str
    gradient_checkpointing: bool
    gpus: int
    notes: list[str] = field(default_factory=list)

    @property
    def use_cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def torch_dtype(self) -> str:
        return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[self.precision]


def plan_device(
    recipe: Recipe, *, cuda_available: bool | None = None, bf16_supported: bool | None = None
) -> DevicePlan:
    """Resolve the recipe against the hardware; impossible requests (sharding without GPUs) are errors.

    ``cuda_available`` and ``bf16_supported`` default to what torch reports; tests pass them to check
    the GPU branches on a CPU machine.
    """
    import torch

    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    model = recipe.model
    notes: list[str] = []
    if model.device == "cuda" and not cuda:
        raise ConfigError("model.device = 'cuda' but torch sees no CUDA GPU — set model.device = 'auto' or 'cpu'")
    device = "cuda" if cuda and model.device != "cpu" else "cpu"
    gpus = torch.cuda.device_count() if device == "cuda" and cuda_available is None else int(device == "cuda")
    if recipe.train.distributed != "none" and device != "cuda":
        raise ConfigError(
            f"train.distributed = '{recipe.train.distributed}' shards the model across CUDA GPUs, and this run has "
            "none — set train.distributed = 'none' (for data parallel on CPU, use torchrun --nproc_per_node N)"
        )
    if recipe.train.distributed == "deepspeed" and not recipe.train.deepspeed_config:
        raise ConfigError("train.distributed = 'deepspeed' needs train.deepspeed_config (see recipes/accelerate/)")
    if device == "cuda":
        bf16 = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        precision = model.precision if model.precision != "auto" else ("bf16" if bf16 else "fp32")
        if precision == "bf16" and not bf16:
            notes.append("bf16 requested but this GPU does not support it: using fp16 instead")
            precision = "fp16"
        checkpointing = True if model.gradient_checkpointing is None else model.gradient_checkpointing
    else:
        precision = "fp32"
        if model.precision in ("bf16", "fp16"):
            notes.append(
                f"{model.precision} requested on CPU: training in fp32 instead (half precision on this CPU is slower, "
                "not faster, and fp16 needs a GPU) — set model.precision = 'fp32' to silence this"
            )
        checkpointing = bool(model.gradient_checkpointing)
        if model.finetune == "qlora":
            notes.append(
                "QLoRA on CPU: the 4-bit base only saves memory; expect it to be ~2x slower than LoRA — "
                "choose model.finetune = 'lora' on CPU unless memory is short"
            )
    for note in notes:
        log.warning(note)
    return DevicePlan(device=device, precision=precision, gradient_checkpointing=checkpointing, gpus=gpus, notes=notes)
