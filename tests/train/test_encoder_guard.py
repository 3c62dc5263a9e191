"""The embedder and reranker trainers share the LLM trainer's loss guard and run record: a loss that turns NaN
stops the run with a diagnosis, and run.json says it diverged, in the shape every trainer writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ragtune.jsonl import write_jsonl
from ragtune.train.negatives import Triplet
from ragtune.train.run import TrainingError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = [{"query": f"question {i} about topic {i}", "positive": f"passage {i} answers topic {i}",
         "negatives": [f"passage {i + 1} is about something else"]} for i in range(8)]


class NaNLoss(torch.nn.Module):
    """A loss that is NaN from the first step (what a too-high learning rate or broken data does later)."""

    def __init__(self, model: torch.nn.Module, *args: object, **kwargs: object) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        weight = next(self.model.parameters())
        return weight.sum() * float("nan")


def assert_diverged(out: Path, kind: str) -> None:
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == kind and record["status"] == "diverged"
    assert {"run_dir", "method", "base_model", "recipe", "data", "device", "versions", "started", "finished",
            "metrics", "log_history"} <= record.keys()


def test_embedder_training_stops_on_a_nan_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ragtune.train import embedder as embedder_module

    monkeypatch.setattr(embedder_module, "_loss", lambda model, recipe: NaNLoss(model))
    triplets = tmp_path / "t.jsonl"
    write_jsonl(triplets, ROWS)
    out = tmp_path / "emb"
    recipe = embedder_module.load_embedder_recipe(None, [
        f"data.triplets=['{triplets}']", f"output.dir='{out}'", "data.eval_split=0", "train.batch_size=4",
        "output.report_to=[]"])
    with pytest.raises(TrainingError, match=r"training diverged: loss is nan at step 1 .* lower train.learning_rate"):
        embedder_module.train_embedder(recipe)
    assert_diverged(out, "embedder")


def test_reranker_training_stops_on_a_nan_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers.cross_encoder import losses

    from ragtune.train.reranker import load_reranker_recipe, train_reranker

    monkeypatch.setattr(losses, "BinaryCrossEntropyLoss", NaNLoss)
    out = tmp_path / "rr"
    triplets = [Triplet(r["query"], r["positive"], r["negatives"]) for r in ROWS]
    with pytest.raises(TrainingError, match=r"training diverged: loss is nan .* run the same command again"):
        train_reranker(triplets, out, load_reranker_recipe(None, ["train.batch_size=4", "model.max_length=32"]))
    assert_diverged(out, "reranker")
