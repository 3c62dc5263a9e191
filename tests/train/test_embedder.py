"""Embedder fine-tuning: the recipe, the training examples, and a tiny run that improves held-out retrieval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ragtune.errors import ConfigError
from ragtune.jsonl import write_jsonl
from ragtune.train.embedder import (
    EmbedderRecipe,
    load_embedder_recipe,
    load_examples,
    load_heldout,
    split_examples,
)
from ragtune.train.negatives import read_triplets
from ragtune.train.recipe import RecipeError

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "codenames.json").read_text())


def _topic(pid: str) -> str:
    return pid.rstrip("0123456789")


@pytest.mark.unit
class TestRecipe:
    def test_shipped_recipe_loads_with_the_documented_defaults(self) -> None:
        recipe = load_embedder_recipe(ROOT / "recipes" / "embedder.toml")
        assert recipe.model.base_model == "all-MiniLM-L6-v2" and recipe.loss.kind == "mnrl"
        assert recipe.data.eval_split == 0.2 and recipe.output.report_to == ["tensorboard"]
        assert recipe.model_dump() | {"data": None} == EmbedderRecipe().model_dump() | {"data": None}

    def test_unknown_keys_name_the_closest_one(self, tmp_path: Path) -> None:
        with pytest.raises(RecipeError, match="did you mean 'train.learning_rate'"):
            load_embedder_recipe(None, ["train.learnig_rate=1e-4"])
        path = tmp_path / "r.toml"
        path.write_text("[loss]\nkinds = 'mnrl'\n")
        with pytest.raises(RecipeError, match="unknown key 'loss.kinds' — did you mean 'loss.kind'"):
            load_embedder_recipe(path)
        with pytest.raises(RecipeError, match="loss.kind"):
            load_embedder_recipe(None, ["loss.kind=contrastive"])

    def test_overrides_are_typed(self) -> None:
        recipe = load_embedder_recipe(None, ["loss.matryoshka_dims=[256, 64]", "train.epochs=2", "data.pairs=['a']"])
        assert recipe.loss.matryoshka_dims == [256, 64] and recipe.train.epochs == 2.0 and recipe.data.pairs == ["a"]


@pytest.mark.unit
class TestExamples:
    def test_mined_and_generated_negatives_merge_per_query(self, tmp_path: Path) -> None:
        mined, generated, pairs = tmp_path / "m.jsonl", tmp_path / "g.jsonl", tmp_path / "p.jsonl"
        write_jsonl(mined, [{"query": "q1", "positive": "P1", "negatives": ["N1", "N2"], "source": "mined"},
                            {"query": "q2", "positive": "P2", "negatives": [], "source": "mined"}])
        write_jsonl(generated, [{"query": "q1", "positive": "P1", "negatives": ["G1", "N1"], "source": "generated"}])
        write_jsonl(pairs, [{"query": "q3", "positive": "P3"}, {"query": "q1", "positive": "P1"}])
        recipe = load_embedder_recipe(None, [f"data.triplets=['{mined}', '{generated}']", f"data.pairs=['{pairs}']"])
        examples = {e.query: e for e in load_examples(recipe)}
        # Interleaved by file, so data.negatives = 2 takes one mined and one generated negative.
        assert examples["q1"].negatives == ["N1", "G1", "N2"] and examples["q1"].source == "mined+generated"
        assert examples["q2"].negatives == [] and examples["q3"].source == "pairs" and len(examples) == 3

    def test_split_holds_out_whole_queries(self) -> None:
        from ragtune.train.negatives import Triplet

        examples = [Triplet(f"q{i % 10}", f"P{i}", []) for i in range(30)]
        train, held = split_examples(examples, 0.2, seed=1)
        assert len({e.query for e in held}) == 2
        assert not {e.query for e in train} & {e.query for e in held}
        assert split_examples(examples, 0.0, seed=1) == (examples, [])

    def test_a_given_dev_file_replaces_the_random_split_and_leaves_training(self, tmp_path: Path) -> None:
        train_file, dev_file = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
        write_jsonl(train_file, [{"query": f"q{i}", "positive": f"P{i}", "negatives": [f"N{i}"]} for i in range(10)])
        write_jsonl(dev_file, [{"query": "q3", "positive": "P3", "negatives": ["N3"]},
                               {"query": "q99", "positive": "P99"}])
        recipe = load_embedder_recipe(None, [f"data.triplets=['{train_file}']", f"data.eval=['{dev_file}']"])
        train, held = load_heldout(recipe, load_examples(recipe))
        assert [e.query for e in held] == ["q3", "q99"]
        assert len(train) == 9 and "q3" not in {e.query for e in train}

    def test_bad_data_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(RecipeError, match="names no training data"):
            load_examples(EmbedderRecipe())
        path = tmp_path / "t.jsonl"
        path.write_text('{"query": "q", "positive": "p", "negatives": "n"}\n')
        with pytest.raises(ConfigError, match=r"t.jsonl:1: \"negatives\" must be a list"):
            read_triplets(path)
        with pytest.raises(ConfigError, match="no such triplets file"):
            read_triplets(tmp_path / "missing.jsonl")
        ids_only = tmp_path / "ids.jsonl"
        write_jsonl(ids_only, [{"query": "q", "chunk_id": "c1"}])
        with pytest.raises(ConfigError, match="passage text"):
            load_examples(load_embedder_recipe(None, [f"data.pairs=['{ids_only}']"]))

    def test_triplet_loss_needs_negatives_for_every_query(self, tmp_path: Path) -> None:
        from ragtune.train.embedder import train_embedder

        pairs = tmp_path / "p.jsonl"
        write_jsonl(pairs, [{"query": f"q{i}", "positive": f"P{i}"} for i in range(5)])
        recipe = load_embedder_recipe(None, [f"data.pairs=['{pairs}']", "loss.kind=triplet", "data.eval_split=0"])
        with pytest.raises(RecipeError, match="triplet"):
            train_embedder(recipe)

    def test_margin_mse_needs_negatives_and_a_cross_encoder_teacher(self, tmp_path: Path) -> None:
        from ragtune.train.embedder import train_embedder

        pairs, triplets = tmp_path / "p.jsonl", tmp_path / "t.jsonl"
        write_jsonl(pairs, [{"query": f"q{i}", "positive": f"P{i}"} for i in range(5)])
        write_jsonl(triplets, [{"query": f"q{i}", "positive": f"P{i}", "negatives": ["N"]} for i in range(5)])
        common = ["loss.kind=margin_mse", "data.eval_split=0", f"output.dir='{tmp_path / 'run'}'"]
        with pytest.raises(RecipeError, match="'margin_mse' needs a negative for every query"):
            train_embedder(load_embedder_recipe(None, [*common, f"data.pairs=['{pairs}']"]))
        with pytest.raises(ConfigError, match="needs loss.teacher — a cross-encoder directory"):
            train_embedder(load_embedder_recipe(None, [*common, f"data.triplets=['{triplets}']"]))
        with pytest.raises(ConfigError, match="is not a cross-encoder directory .no config.json."):
            train_embedder(load_embedder_recipe(None, [*common, f"data.triplets=['{triplets}']",
                                                       f"loss.teacher='{tmp_path}'"]))
        assert not (tmp_path / "run").exists()  # refused before anything was written

    def test_teacher_scores_are_cached_per_teacher_and_resume_after_a_cut_line(self, tmp_path: Path,
                                                                              monkeypatch) -> None:
        import sentence_transformers

        from ragtune.train import distill

        teacher = tmp_path / "teacher"
        teacher.mkdir()
        (teacher / "config.json").write_text("{}")
        (teacher / "model.safetensors").write_bytes(b"weights")
        calls: list[list[tuple[str, str]]] = []

        class Scorer:  # stands in for the CrossEncoder: the cache logic is what is tested here
            num_labels = 1

            def __init__(self, *args, **kwargs) -> None:
                pass

            def predict(self, pairs, **kwargs):
                calls.append(list(pairs))
                return np.array([len(q) - len(p) for q, p in pairs], dtype=np.float32)

        monkeypatch.setattr(sentence_transformers, "CrossEncoder", Scorer)
        cache = tmp_path / "run" / distill.TEACHER_SCORES
        pairs = [("query one", "a"), ("query one", "bbb"), ("q2", "cc"), ("query one", "a")]
        scores, scored = distill.teacher_scores(str(teacher), pairs, cache, batch_size=2)
        assert scored == 3 and [len(c) for c in calls] == [2, 1]
        assert scores[distill._key("query one", "bbb")] == 6.0
        lines = cache.read_text().splitlines()
        cache.write_text("\n".join(lines[:2]) + "\n" + lines[2][:10])  # killed while writing the last line
        again, scored = distill.teacher_scores(str(teacher), pairs, cache, batch_size=2)
        assert scored == 1 and again == scores and calls[-1] == [("q2", "cc")]
        assert distill.teacher_scores(str(teacher), pairs, cache)[1] == 0  # the rescored row was kept whole
        (teacher / "model.safetensors").write_bytes(b"retrained")  # another teacher in the same place
        _, scored = distill.teacher_scores(str(teacher), pairs, cache, batch_size=2)
        assert scored == 3
        rows = {"anchor": ["query one"], "positive": ["a"], "negative": ["bbb"]}
        labels = distill.margin_labels(rows, str(teacher), tmp_path / "run", None, scale=0.5)
        assert labels.labels == [0.5 * (8.0 - 6.0)] and labels.scored == 0


def _heldout_mrr(encode_queries, encode_documents) -> float:
    ids = list(FIXTURE["passages"])
    docs = encode_documents([FIXTURE["passages"][p] for p in ids])
    reciprocal = []
    for query, answer in FIXTURE["heldout"]:
        scores = docs @ encode_queries([query])[0]
        order = [ids[i] for i in np.argsort(-scores, kind="stable")]
        reciprocal.append(1 / (order.index(answer) + 1))
    return float(np.mean(reciprocal))


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_training_run_improves_held_out_retrieval_and_eval_uses_the_run(tmp_path: Path) -> None:
    from ragtune.cli import app
    from ragtune.embed import load_embedder

    # Training is measured on the weights themselves (torch, fp32), so int8 rounding on a tiny set cannot hide it.
    embedder = load_embedder("all-MiniLM-L6-v2", backend="torch")
    # Hard negatives from other systems, ranked by the untrained model (as mining would rank them).
    passages = FIXTURE["passages"]
    ids = list(passages)
    docs = embedder.encode_documents([passages[p] for p in ids])
    rows = []
    for query, pid in FIXTURE["train"]:
        order = np.argsort(-(docs @ embedder.encode_queries([query])[0]))
        negatives = [passages[ids[i]] for i in order if _topic(ids[i]) != _topic(pid)][:2]
        rows.append({"query": query, "positive": passages[pid], "negatives": negatives, "source": "mined"})
    triplets = tmp_path / "triplets.jsonl"
    write_jsonl(triplets, rows)
    out = tmp_path / "emb-001"
    result = CliRunner().invoke(app, [
        "train", "embedder", str(ROOT / "recipes" / "embedder.toml"), "--json",
        "--set", f"data.triplets=['{triplets}']", "--set", f"output.dir='{out}'", "--set", "train.epochs=6",
        "--set", "train.learning_rate=1e-4", "--set", "train.batch_size=16", "--set", "train.eval_steps=2",
    ])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    metrics = run["metrics"]
    assert run["kind"] == "embedder" and metrics["global_step"] > 0 and run["data"]["heldout_queries"] == 3
    assert "heldout_cosine_ndcg@10" in metrics["heldout_before"] and metrics["best_checkpoint"]
    assert (out / "run.json").is_file() and (out / "model.safetensors").is_file()
    assert list((out / "checkpoints" / "runs").rglob("events.out.tfevents*")), "TensorBoard logs are written"

    before = _heldout_mrr(embedder.encode_queries, embedder.encode_documents)
    trained = load_embedder(str(out), backend="torch")
    after = _heldout_mrr(trained.encode_queries, trained.encode_documents)
    assert after > before + 0.04, (before, after)

    # `ragtune eval retrieval --embedder DIR`: a KB per embedder, the fine-tuned one ranks held-out answers higher.
    from ragtune.evaluate.retrieval import evaluate_beir

    beir = tmp_path / "codenames"
    (beir / "qrels").mkdir(parents=True)
    write_jsonl(beir / "corpus.jsonl", [{"_id": pid, "text": text} for pid, text in passages.items()])
    write_jsonl(beir / "queries.jsonl", [{"_id": f"h{i}", "text": q} for i, (q, _) in enumerate(FIXTURE["heldout"])])
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"h{i}\t{pid}\t1\n" for i, (_, pid) in enumerate(FIXTURE["heldout"])))
    scores = {}
    for name, model in (("base", "all-MiniLM-L6-v2"), ("tuned", str(out))):
        result = evaluate_beir(beir, tmp_path / f"kb-{name}", modes=["dense"], embedder=model)
        assert result["embedder"] == model
        scores[name] = result["modes"]["dense"]["metrics"]["ndcg_cut_10"]
    assert scores["tuned"] > scores["base"], scores


@pytest.mark.integration
def test_a_time_limit_stops_training_at_the_step_it_runs_out_and_keeps_the_evaluated_model(tmp_path: Path) -> None:
    from ragtune.train.embedder import train_embedder

    passages = FIXTURE["passages"]
    rows = [{"query": query, "positive": passages[pid],
             "negatives": [passages[p] for p in passages if _topic(p) != _topic(pid)][:1]}
            for query, pid in FIXTURE["train"]]
    write_jsonl(tmp_path / "triplets.jsonl", rows)
    out = tmp_path / "emb"
    recipe = EmbedderRecipe.model_validate({
        "model": {"base_model": "all-MiniLM-L6-v2"},
        "data": {"triplets": [str(tmp_path / "triplets.jsonl")], "eval_split": 0.2},
        "train": {"epochs": 50, "batch_size": 4, "max_minutes": 0.0005, "num_threads": 1},  # 30 ms: the first step
        "output": {"dir": str(out), "report_to": []},
    })
    metrics = train_embedder(recipe, resume=False)["metrics"]
    assert metrics["stopped_by_time_limit_at_step"] == metrics["global_step"] == 1  # of 50 epochs' steps
    assert metrics["time_limit_minutes"] == 0.0005
    assert metrics["best_checkpoint"].endswith("checkpoint-1")  # evaluated and saved where it stopped
    assert (out / "model.safetensors").is_file() and json.loads((out / "run.json").read_text())["status"] == "finished"
