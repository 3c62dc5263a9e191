"""Device plans: fp32 and no checkpointing on CPU, loud errors for sharding without GPUs."""

from __future__ import annotations

import pytest

from ragtune.errors import ConfigError
from ragtune.train.device import plan_device
from ragtune.train.recipe import load_recipe
from ragtune.train.run import callbacks, trainer_arguments


@pytest.mark.unit
class TestPlanDevice:
    def test_cpu_defaults(self) -> None:
        plan = plan_device(load_recipe(None), cuda_available=False)
        assert (plan.device, plan.precision, plan.gradient_checkpointing, plan.use_cpu) == ("cpu", "fp32", False, True)
        assert plan.notes == []

    def test_bf16_on_cpu_downgrades_with_a_note(self) -> None:
        plan = plan_device(load_recipe(None, ["model.precision=bf16"]), cuda_available=False)
        assert plan.precision == "fp32"
        assert "bf16 requested on CPU" in plan.notes[0]

    @pytest.mark.parametrize("mode", ["fsdp", "deepspeed"])
    def test_sharding_without_gpus_is_an_error(self, mode: str) -> None:
        with pytest.raises(ConfigError, match=f"train.distributed = '{mode}'.*none"):
            plan_device(load_recipe(None, [f"train.distributed={mode}"]), cuda_available=False)

    def test_cuda_requested_without_gpu(self) -> None:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            plan_device(load_recipe(None, ["model.device=cuda"]), cuda_available=False)

    def test_qlora_on_cpu_says_it_is_slower(self) -> None:
        plan = plan_device(load_recipe(None, ["model.finetune=qlora"]), cuda_available=False)
        assert any("only saves memory" in note for note in plan.notes)

    def test_gpu_branch(self) -> None:
        plan = plan_device(load_recipe(None), cuda_available=True, bf16_supported=True)
        assert (plan.device, plan.precision, plan.gradient_checkpointing) == ("cuda", "bf16", True)
        old_gpu = plan_device(load_recipe(None, ["model.precision=bf16"]), cuda_available=True, bf16_supported=False)
        assert old_gpu.precision == "fp16" and old_gpu.notes

    def test_trainer_arguments_on_cpu(self, tmp_path) -> None:
        recipe = load_recipe(None, ["model.finetune=qlora"])
        plan = plan_device(recipe, cuda_available=False)
        args = trainer_arguments(recipe, plan, tmp_path, has_eval=True)
        assert args["use_cpu"] and not args["bf16"] and not args["fp16"] and not args["activation_checkpointing"]
        assert args["optim"] == "paged_adamw_32bit"
        assert (args["eval_strategy"], args["save_strategy"], args["save_total_limit"]) == ("epoch", "epoch", 3)
        assert args["load_best_model_at_end"] and args["metric_for_best_model"] == "eval_loss"
        assert args["lr_scheduler_type"] == "cosine" and args["warmup_steps"] == 0.03
        no_eval = trainer_arguments(recipe, plan, tmp_path, has_eval=False)
        assert no_eval["eval_strategy"] == "no" and no_eval["save_strategy"] == "epoch"


@pytest.mark.unit
def test_early_stopping_follows_the_recipe() -> None:
    from transformers import EarlyStoppingCallback

    (callback,) = callbacks(load_recipe(None, ["train.early_stopping_patience=3"]), has_eval=True)
    assert isinstance(callback, EarlyStoppingCallback) and callback.early_stopping_patience == 3
    assert callbacks(load_recipe(None, ["train.early_stopping_patience=0"]), has_eval=True) == []
    assert callbacks(load_recipe(None), has_eval=False) == []
