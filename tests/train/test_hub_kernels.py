"""ragtune never fetches transformers' hub kernels (code from the Hub, fetched at load and again when training
starts): offline on a GPU that failed GRPO at its first step. Users who want them set USE_HUB_KERNELS."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.integration
def test_models_load_without_hub_kernels(tiny_model_dir: str) -> None:
    from transformers import AutoModelForCausalLM

    import ragtune  # noqa: F401  (sets the default)

    assert os.environ["USE_HUB_KERNELS"] == "0"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.train()
    assert model.use_kernels is False


@pytest.mark.unit
def test_a_users_choice_is_kept() -> None:
    code = "import os, ragtune; print(os.environ['USE_HUB_KERNELS'])"
    env = {**os.environ, "USE_HUB_KERNELS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    env.pop("USE_HUB_KERNELS")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
