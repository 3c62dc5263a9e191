"""Merging, serving and evaluating a trained adapter: merged weights equal base + adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import QA, write_jsonl

from ragtune.errors import ConfigError
from ragtune.train.merge import MERGE_FILE, merge_adapter


def _logits(model, tokenizer, text: str):
    import torch

    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.integration
@pytest.mark.slow
class TestMerge:
    def test_merged_model_equals_base_plus_adapter(self, lora_run: Path, tiny_model_dir: str, tmp_path: Path) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from ragtune.train.model import load_tokenizer

        tokenizer = load_tokenizer(tiny_model_dir)
        text = "Question: What is the refund window?"
        base = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer, text)
        unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(lora_run))
        with_adapter = _logits(unmerged, tokenizer, text)
        assert not torch.allclose(base, with_adapter, atol=1e-3), "training left the adapter without effect"

        out = merge_adapter(lora_run, tmp_path / "merged")
        merged = AutoModelForCausalLM.from_pretrained(out)
        torch.testing.assert_close(_logits(merged, tokenizer, text), with_adapter, atol=1e-4, rtol=1e-4)
        assert json.loads((out / MERGE_FILE).read_text())["base_model"] == tiny_model_dir
        assert not any(name.startswith("adapter") for name in (p.name for p in out.iterdir()))
        with pytest.raises(ConfigError, match="not empty"):
            merge_adapter(lora_run, out)

    def test_local_llm_serves_adapter_and_merged_model_alike(self, lora_run: Path, tiny_model_dir: str,
                                                              tmp_path: Path) -> None:
        from ragtune.llm import LocalLLM

        merged = merge_adapter(lora_run, tmp_path / "merged")
        question = [{"role": "user", "content": QA[0][0]}]
        with_adapter = LocalLLM(tiny_model_dir, adapter=str(lora_run)).chat(question, max_tokens=8)
        from_merged = LocalLLM(str(merged)).chat(question, max_tokens=8)
        assert with_adapter == from_merged
        with pytest.raises(ConfigError, match="is a whole model"):
            LocalLLM(tiny_model_dir, adapter=str(merged))

    def test_model_eval_report(self, lora_run: Path, tmp_path: Path) -> None:
        from ragtune.train.evaluation import evaluate_model

        data = write_jsonl(tmp_path / "held.jsonl", [{"instruction": q, "output": a} for q, a in QA[:3]])
        report = evaluate_model(lora_run, data, max_new_tokens=4)
        assert report["examples"] == 3
        for side in ("tuned", "base"):
            assert set(report[side]) == {"perplexity", "rouge_l", "exact_match"}
            assert report[side]["perplexity"] > 1
        assert report["tuned"]["perplexity"] < report["base"]["perplexity"]
        win = report["win_rate_vs_base"]
        assert win["wins"] + win["losses"] + win["ties"] == 3 and win["judge"] == "overlap" and win["position_swap"]
