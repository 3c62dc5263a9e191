"""Hard-negative mining and reranker training on a small fixture, with the real bundled MiniLM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragtune.errors import ConfigError
from ragtune.ingest import document_id
from ragtune.jsonl import write_jsonl
from ragtune.kb import KnowledgeBase
from ragtune.train.negatives import TrainingPair, mine_hard_negatives, read_pairs
from ragtune.types import Block, BlockType, Document

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "rerank.json").read_text())
DUPLICATE = "fixture:p03-copy"  # the same text as p03 under another name: must never be p03's negative


def _doc(uri: str, text: str) -> tuple[str, Document]:
    return uri, Document.assemble([Block(type=BlockType.PARAGRAPH, text=text)], source=uri, source_type="txt")


def _pair(query: str, pid: str) -> TrainingPair:
    return TrainingPair(query, query_id=pid, document_ids=(document_id(f"fixture:{pid}"),))


@pytest.fixture(scope="module")
def embedder():
    """fp32 MiniLM: the training assertions below were set with the negatives that fp32 retrieval mines."""
    from ragtune.embed import load_embedder

    return load_embedder("all-MiniLM-L6-v2", precision="fp32")


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder):
    # The fusion the assertions below were set with: hybrid ranks pick the mined negatives, and so the trained model.
    base = KnowledgeBase.open(tmp_path_factory.mktemp("rerank") / "kb", create=True, embedder=embedder, rrf_k=60,
                              dense_weight=1.0)
    docs = [_doc(f"fixture:{pid}", text) for pid, text in FIXTURE["passages"].items()]
    docs.append(_doc(DUPLICATE, FIXTURE["passages"]["p03"]))
    base.ingest_documents(docs, total=len(docs))
    yield base
    base.close()


@pytest.mark.integration
class TestMining:
    def test_negatives_never_include_a_positive(self, kb: KnowledgeBase) -> None:
        pairs = [_pair(q, p) for q, p in FIXTURE["train"]]
        triplets = mine_hard_negatives(kb, pairs, n_negatives=5, rank_window=(1, 15), margin=None)
        assert len(triplets) == len(pairs)
        for t, (_, pid) in zip(triplets, FIXTURE["train"], strict=True):
            assert t.positive == FIXTURE["passages"][pid]
            assert t.positive not in t.negatives
            assert all(not cid.startswith(document_id(f"fixture:{pid}")) for cid in t.negative_ids)
            assert len(t.negatives) == 5 and t.source == "mined"
        expense = triplets[[p for _, p in FIXTURE["train"]].index("p03")]
        assert FIXTURE["passages"]["p03"] not in expense.negatives, "an identical copy of the positive is not negative"

    def test_margin_filter_drops_near_positives(self, kb: KnowledgeBase, embedder) -> None:
        pairs = [_pair(q, p) for q, p in FIXTURE["train"]]
        loose = mine_hard_negatives(kb, pairs, n_negatives=30, rank_window=(1, 30), margin=None)
        tight = mine_hard_negatives(kb, pairs, n_negatives=30, rank_window=(1, 30), margin=0.6)
        assert sum(t.dropped_by_margin for t in tight) > 0
        assert sum(len(t.negatives) for t in tight) < sum(len(t.negatives) for t in loose)
        for t in tight:
            q = embedder.encode_queries([t.query])[0]
            pos = float(np.dot(q, embedder.encode_documents([t.positive])[0]))
            negs = embedder.encode_documents(t.negatives) @ q
            assert (negs < 0.6 * pos + 1e-4).all()

    def test_rank_window_and_bad_arguments(self, kb: KnowledgeBase) -> None:
        t = mine_hard_negatives(kb, [_pair(*FIXTURE["train"][0])], n_negatives=50, rank_window=(5, 8), margin=None)
        assert 0 < len(t[0].negatives) <= 4
        with pytest.raises(ConfigError, match="rank_window"):
            mine_hard_negatives(kb, [], rank_window=(0, 5))
        with pytest.raises(ConfigError, match="margin"):
            mine_hard_negatives(kb, [], margin=1.5)

    def test_pairs_file_errors_name_the_line(self, tmp_path: Path) -> None:
        path = tmp_path / "pairs.jsonl"
        path.write_text('{"query": "q", "positive": "p"}\n{"query": "q2"}\n')
        with pytest.raises(ConfigError, match=r"pairs.jsonl:2"):
            read_pairs(path)
        path.write_text('{"query": "q", "positive": "p"}\nnot json\n')
        with pytest.raises(ConfigError, match=r"pairs.jsonl line 2: not valid JSON"):
            read_pairs(path)
        with pytest.raises(ConfigError, match="no such pairs file"):
            read_pairs(tmp_path / "missing.jsonl")


def _heldout_scores(score) -> tuple[float, int]:
    """MRR of each held-out query's answer among the held-out passages, and how often it beats its distractor."""
    ids = [pid for pid in FIXTURE["passages"] if pid[0] in "hd"]
    texts = [FIXTURE["passages"][pid] for pid in ids]
    reciprocal, wins = [], 0
    for query, answer, distractor in FIXTURE["heldout"]:
        s = np.asarray(score(query, texts))
        order = [ids[i] for i in np.argsort(-s, kind="stable")]
        reciprocal.append(1 / (order.index(answer) + 1))
        wins += int(s[ids.index(answer)] > s[ids.index(distractor)])
    return float(np.mean(reciprocal)), wins


@pytest.fixture(scope="module")
def trained(kb: KnowledgeBase, tmp_path_factory) -> Path:
    from ragtune.train.reranker import load_reranker_recipe, train_reranker

    triplets = mine_hard_negatives(kb, [_pair(q, p) for q, p in FIXTURE["train"]], n_negatives=3,
                                   rank_window=(1, 10))
    out = tmp_path_factory.mktemp("reranker") / "model"
    recipe = load_reranker_recipe(None, ["train.epochs=5", "train.learning_rate=2e-4", "train.batch_size=16",
                                          "data.negatives=3", "model.max_length=64"])
    run = train_reranker(triplets, out, recipe)
    assert run["metrics"]["global_step"] > 0 and (out / "run.json").is_file()
    return out


@pytest.mark.integration
@pytest.mark.slow
class TestTraining:
    def test_trained_reranker_beats_its_untrained_start_on_lexically_far_answers(self, trained: Path) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        from ragtune.embed.sentence_transformers import resolve_model
        from ragtune.retrieve.rerank import CrossEncoderReranker

        torch.manual_seed(42)  # the untrained head is random: the same seed the recipe uses
        start = CrossEncoder(resolve_model("all-MiniLM-L6-v2"), num_labels=1, max_length=64)
        before_mrr, before_wins = _heldout_scores(lambda q, texts: start.predict([(q, t) for t in texts]))
        reranker = CrossEncoderReranker(trained, max_length=64)
        after_mrr, after_wins = _heldout_scores(reranker.score)
        assert after_mrr > before_mrr + 0.1
        assert after_wins >= 4 and after_wins > before_wins

    def test_reranker_orders_the_answer_above_a_lexical_lookalike(self, kb: KnowledgeBase, trained: Path) -> None:
        # BM25 ranks the lookalike (many shared words) above the answer; the trained cross-encoder reverses that.
        query, answer, distractor = FIXTURE["heldout"][0]
        sparse = [h.source for h in kb.retrieve(query, 10, mode="sparse", rerank=False).hits]
        assert sparse.index(f"fixture:{distractor}") < sparse.index(f"fixture:{answer}")
        retriever = kb.retriever(rerank=f"cross-encoder:{trained}")
        retriever.rerank_fusion = 0.0  # the reranker's order alone, not blended with BM25's
        hits = retriever.search(query, 10, mode="sparse").hits
        sources = [h.source for h in hits]
        assert sources.index(f"fixture:{answer}") < sources.index(f"fixture:{distractor}")
        assert all("rerank" in h.scores for h in hits)

    def test_scores_are_cached_per_query_and_passage(self, trained: Path) -> None:
        from ragtune.retrieve.rerank import CrossEncoderReranker

        reranker = CrossEncoderReranker(trained, max_length=64, cache_size=3)
        calls: list[int] = []
        predict = reranker._predict
        reranker._predict = lambda pairs: calls.append(len(pairs)) or predict(pairs)  # type: ignore[method-assign]
        first = reranker.score("sick pay", ["a", "b"])
        again = reranker.score("sick pay", ["b", "a", "c"])
        assert calls == [2, 1] and again[0] == first[1] and again[1] == first[0]
        reranker.score("other", ["x", "y"])  # evicts the oldest entries beyond cache_size
        assert len(reranker._cache) == 3

    def test_onnx_scores_follow_torch_and_int8_keeps_the_order(self, trained: Path, tmp_path, monkeypatch) -> None:
        from scipy.stats import spearmanr

        from ragtune.retrieve.rerank import CrossEncoderReranker

        monkeypatch.setenv("RAGTUNE_MODEL_CACHE", str(tmp_path))
        torch_ce = CrossEncoderReranker(trained, max_length=64, backend="torch")
        fp32 = CrossEncoderReranker(trained, max_length=64, precision="fp32")
        int8 = CrossEncoderReranker(trained, max_length=64, precision="int8")
        assert (fp32.backend, fp32.precision, int8.precision, torch_ce.backend) == ("onnx", "fp32", "int8", "torch")
        assert len(list(tmp_path.glob("onnx/*/model.int8.onnx"))) == 1  # exported once, shared by both
        passages = [FIXTURE["passages"][i] for _, a, d in FIXTURE["heldout"] for i in (a, d)]
        for query, _, _ in FIXTURE["heldout"]:
            reference = torch_ce.score(query, passages)
            assert np.abs(fp32.score(query, passages) - reference).max() < 1e-4
            quantised = int8.score(query, passages)
            assert spearmanr(quantised, reference).statistic > 0.9
            # int8's best passage is the reference's best, or one the reference scores within a hair of it.
            assert reference[int(np.argmax(quantised))] >= reference.max() - 0.005
        # Scores are what sentence-transformers' predict returns (its activation applied).
        assert np.all((reference > 0) & (reference < 1))

    def test_margin_mse_moves_the_cross_encoders_ranking_into_the_embedder(
        self, kb: KnowledgeBase, trained: Path, tmp_path: Path
    ) -> None:
        from scipy.stats import spearmanr

        from ragtune.embed import load_embedder
        from ragtune.retrieve.rerank import CrossEncoderReranker
        from ragtune.train.distill import TEACHER_SCORES, margin_labels
        from ragtune.train.embedder import load_embedder_recipe, train_embedder

        triplets = mine_hard_negatives(kb, [_pair(q, p) for q, p in FIXTURE["train"]], n_negatives=3,
                                       rank_window=(1, 10))
        data = tmp_path / "triplets.jsonl"
        write_jsonl(data, [t.to_dict() for t in triplets])
        out = tmp_path / "student"
        recipe = load_embedder_recipe(None, [
            "loss.kind=margin_mse", f"loss.teacher='{trained}'", "loss.teacher_max_length=64", "data.negatives=3",
            f"data.triplets=['{data}']", "data.eval_split=0", "train.epochs=6", "train.learning_rate=1e-4",
            "train.batch_size=16", "model.max_seq_length=64", f"output.dir='{out}'", "output.report_to=[]"])
        run = train_embedder(recipe)
        pairs = len({(t.query, text) for t in triplets for text in (t.positive, *t.negatives[:3])})
        assert run["data"]["teacher_pairs"] == pairs and run["data"]["teacher_scored_now"] == pairs
        assert 0 < run["data"]["teacher_scale"] < 1  # logits span more than cosines: fitted down
        assert len((out / TEACHER_SCORES).read_text().splitlines()) == pairs

        teacher = CrossEncoderReranker(trained, max_length=64, backend="torch")
        base = load_embedder("all-MiniLM-L6-v2", backend="torch")
        student = load_embedder(str(out), backend="torch")

        def margins(model) -> tuple[list[float], list[float]]:
            """(model's, teacher's) score margin of each training row: positive minus negative."""
            own, theirs = [], []
            for t in triplets:
                for negative in t.negatives[:3]:
                    vectors = model.encode_documents([t.positive, negative]) @ model.encode_queries([t.query])[0]
                    scores = teacher.score(t.query, [t.positive, negative])
                    own.append(float(vectors[0] - vectors[1]))
                    theirs.append(float(scores[0] - scores[1]))
            return own, theirs

        def agreement(model) -> float:
            """Mean Spearman correlation of the model's and the teacher's scores over held-out passages, per
            held-out query: queries and passages training never saw."""
            texts = [FIXTURE["passages"][pid] for pid in FIXTURE["passages"] if pid[0] in "hd"]
            return float(np.mean([spearmanr(model.encode_documents(texts) @ model.encode_queries([q])[0],
                                            teacher.score(q, texts)).statistic for q, _, _ in FIXTURE["heldout"]]))

        before, after = (spearmanr(*margins(m)).statistic for m in (base, student))
        assert after > before + 0.4 and after > 0.6, (before, after)  # it learned the teacher's margins
        before, after = agreement(base), agreement(student)
        assert after > before + 0.1, (before, after)  # and ranks unseen passages more like the teacher, too

        # The teacher's scores are kept: computing the labels again scores nothing; another teacher scores anew.
        rows = {"anchor": [triplets[0].query], "positive": [triplets[0].positive],
                "negative": [triplets[0].negatives[0]]}
        again = margin_labels(rows, str(trained), out, None, scale=1.0, max_length=64)
        assert again.scored == 0 and again.pairs == 2
        assert margin_labels(rows, str(trained), out, None, scale=1.0, max_length=96).scored == 2

    def test_a_rerun_with_another_recipe_refuses_to_mix_checkpoints(self, kb: KnowledgeBase, trained: Path) -> None:
        from ragtune.train.reranker import load_reranker_recipe, train_reranker

        triplets = mine_hard_negatives(kb, [_pair(*FIXTURE["train"][0])], n_negatives=1, rank_window=(1, 5))
        with pytest.raises(ConfigError, match="another recipe"):
            train_reranker(triplets, trained, load_reranker_recipe(None, ["train.epochs=1", "model.max_length=64"]))


@pytest.mark.e2e
@pytest.mark.slow
def test_cli_trains_from_a_pairs_file_and_search_uses_it(kb: KnowledgeBase, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, [{"query": q, "document_id": document_id(f"fixture:{p}")} for q, p in FIXTURE["train"]])
    out = tmp_path / "rr"
    ragtune = [sys.executable, "-m", "ragtune"]
    env_kb = ["--kb", str(kb.path)]
    done = subprocess.run([*ragtune, "train", "reranker", *env_kb, "--pairs", str(pairs), "--out", str(out),
                           "--epochs", "1", "--negatives", "2", "--batch-size", "16", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout[done.stdout.index("{"):])
    assert run["kind"] == "reranker" and run["data"]["dev_queries"] > 0
    assert "dev_ndcg@10" in run["metrics"]["dev_after"]
    assert (out / "triplets.jsonl").is_file() and (out / "config.json").is_file()
    found = subprocess.run([*ragtune, "search", "expense receipts", *env_kb, "--rerank", f"cross-encoder:{out}",
                            "--json"], capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr[-2000:]
    hits = json.loads(found.stdout)["hits"]
    assert hits and all("rerank" in h["scores"] for h in hits)
    bad = subprocess.run([*ragtune, "train", "reranker", *env_kb, "--out", str(out)], capture_output=True, text=True)
    assert bad.returncode == 1 and "exactly one source" in bad.stderr
