"""Real SFT runs on a tiny Llama (SmolLM2 tokenizer): loss goes down, checkpoints, resume, run.json, NaN guard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from train_helpers import QA, tiny_overrides

from ragtune.evaluate.lm import perplexity
from ragtune.train.data import encode_chat, load_examples
from ragtune.train.recipe import load_recipe
from ragtune.train.run import TrainingError
from ragtune.train.sft import train_sft


def _perplexity_on(model: Any, tokenizer: Any, data: Path) -> float:
    return perplexity(model, [encode_chat(tokenizer, ex["messages"]) for ex in load_examples(data, kind="sft")])


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("finetune", ["lora", "dora"])
def test_lora_and_dora_lower_the_loss(finetune: str, tiny_model_dir: str, sft_file: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from ragtune.train.merge import load_trained
    from ragtune.train.model import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    before = _perplexity_on(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, sft_file)
    run_dir = tmp_path / "run"
    recipe = load_recipe(None, tiny_overrides(
        tiny_model_dir, sft_file, run_dir,
        **{"model.finetune": finetune, "train.epochs": 4, "train.save_total_limit": 3, "data.eval_split": 0.25},
    ), method="sft")
    record = train_sft(recipe)

    model, _ = load_trained(run_dir)
    after = _perplexity_on(model, tokenizer, sft_file)
    assert after < 0.9 * before
    losses = [h["loss"] for h in record["log_history"] if "loss" in h]
    assert losses[-1] < losses[0]
    assert json.loads((run_dir / "adapter_config.json").read_text())["use_dora"] is (finetune == "dora")
    # One checkpoint per epoch (4), the last 3 kept; eval loss tracked for early stopping.
    assert len(list(run_dir.glob("checkpoint-*"))) == 3
    assert "eval_loss" in record["metrics"]["eval"]
    assert any("tokens_per_second" in h for h in record["log_history"])
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["status"] == "finished" and saved["recipe"]["model"]["finetune"] == finetune
    assert saved["data"]["train_examples"] == 6 and saved["data"]["eval_examples"] == 2
    assert len(saved["data"]["sha256"]) == 64 and saved["versions"]["peft"] != "not installed"
    assert saved["device"]["precision"] == "fp32"


@pytest.mark.integration
@pytest.mark.slow
def test_resume_continues_the_step_count(tiny_model_dir: str, sft_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    settings = {"data.eval_split": 0.0}
    first = train_sft(load_recipe(None, tiny_overrides(tiny_model_dir, sft_file, run_dir, **settings, **{
        "train.epochs": 1}), method="sft"))
    assert first["metrics"]["global_step"] == 2
    with pytest.raises(TrainingError, match="already holds a run"):
        train_sft(load_recipe(None, tiny_overrides(tiny_model_dir, sft_file, run_dir, **settings), method="sft"))
    resumed = train_sft(load_recipe(None, tiny_overrides(tiny_model_dir, sft_file, run_dir, **settings, **{
        "train.epochs": 2}), method="sft"), resume=True)
    assert resumed["metrics"]["global_step"] == 4
    steps = [h["step"] for h in resumed["log_history"] if "loss" in h]
    assert steps[-1] == 4 and 3 in steps


@pytest.mark.integration
def test_nan_loss_stops_with_a_diagnosis(tiny_model_dir: str, sft_file: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    broken = tmp_path / "broken"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(broken)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(broken)
    recipe = load_recipe(None, tiny_overrides(str(broken), sft_file, tmp_path / "run", **{"data.eval_split": 0.0}),
                         method="sft")
    with pytest.raises(TrainingError, match=r"diverged: loss is nan at step 1 \(learning rate .*, precision fp32\)"):
        train_sft(recipe)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "diverged"


@pytest.mark.integration
@pytest.mark.slow
def test_full_finetune_with_packed_text(tiny_model_dir: str, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    data = tmp_path / "corpus.txt"
    data.write_text("\n\n".join(f"{q} {a}" for q, a in QA))
    run_dir = tmp_path / "run"
    recipe = load_recipe(None, tiny_overrides(tiny_model_dir, data, run_dir, **{
        "model.finetune": "full", "data.packing": True, "data.max_seq_len": 32, "data.eval_split": 0.0,
        "train.epochs": 1}), method="sft")
    record = train_sft(recipe)
    assert record["adapter"] is False and not (run_dir / "adapter_config.json").exists()
    trained = AutoModelForCausalLM.from_pretrained(run_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)


@pytest.mark.integration
@pytest.mark.slow
def test_qlora_trains_on_cpu(tiny_model_dir: str, sft_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    recipe = load_recipe(None, tiny_overrides(tiny_model_dir, sft_file, run_dir, **{
        "model.finetune": "qlora", "train.max_steps": 2, "data.eval_split": 0.0}), method="sft")
    record = train_sft(recipe)
    assert record["metrics"]["global_step"] == 2
    assert any("only saves memory" in note for note in record["device"]["notes"])
    assert (run_dir / "adapter_model.safetensors").is_file()
    losses = [h["loss"] for h in record["log_history"] if "loss" in h]
    assert all(loss == loss for loss in losses)  # finite, not NaN


@pytest.mark.integration
def test_missing_data_path_is_a_clear_error(tiny_model_dir: str, tmp_path: Path) -> None:
    from ragtune.train.recipe import RecipeError

    with pytest.raises(RecipeError, match="data.path is not set"):
        train_sft(load_recipe(None, [f"model.name={json.dumps(tiny_model_dir)}"], method="sft"))
    with pytest.raises(Exception, match="no such file"):
        train_sft(load_recipe(None, tiny_overrides(tiny_model_dir, tmp_path / "none.jsonl", tmp_path / "r"),
                              method="sft"))

