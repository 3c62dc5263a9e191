"""Training data: LLM-synthesised queries (parsed, de-duplicated, round-trip filtered), mined and generated
negatives, through the library and the ``ragtune data`` commands."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragtune.errors import ConfigError
from ragtune.kb import KnowledgeBase
from ragtune.train.negatives import TrainingPair, generate_negatives, read_pairs, read_triplets
from ragtune.train.synthetic import synth_queries
from ragtune.types import Block, BlockType, Document

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "codenames.json").read_text())
CHOSEN = ["pay1", "vpn1", "tix1", "exp1", "room1"]
PASSAGES = {pid: FIXTURE["passages"][pid] for pid in CHOSEN}
PAYDAY = "On which day of the month does the payroll system transfer salaries?"
# What the scripted LLM answers for each chunk: several reply formats small models write, an off-topic
# question (the round trip drops it), a duplicate of another chunk's question, an echo of the passage,
# a failure and an empty reply.
SYNTH_REPLIES = {
    "pay1": f'```json\n["{PAYDAY}", "How fast does the service desk answer support tickets?"]\n```',
    "vpn1": f"1. When must staff use the virtual private network?\n2. {PAYDAY}",
    "tix1": "- How quickly are support tickets answered by the service desk?\n- " + PASSAGES["tix1"],
    "exp1": RuntimeError("the server went away"),
    "room1": "",
}
_INSTANCES = itertools.count()


class ScriptedLLM:
    """Answers by the first key found in the prompt; records every prompt. Each instance has its own name, so
    the KB's reply cache never hands one test's scripted replies to another."""

    def __init__(self, replies: dict[str, str | Exception]) -> None:
        self.name = f"scripted-{next(_INSTANCES)}"
        self.replies = replies
        self.prompts: list[str] = []

    def stream(self, messages: list[dict[str, str]], **params: object) -> Iterator[str]:
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        for key, reply in self.replies.items():
            if key in prompt:
                if isinstance(reply, Exception):
                    raise reply
                yield reply
                return

    def chat(self, messages: list[dict[str, str]], **params: object) -> str:
        return "".join(self.stream(messages, **params))


def _doc(uri: str, text: str) -> tuple[str, Document]:
    return uri, Document.assemble([Block(type=BlockType.PARAGRAPH, text=text)], source=uri, source_type="txt")


@pytest.fixture(scope="module")
def kb_path(tmp_path_factory, embedder) -> Path:
    path = tmp_path_factory.mktemp("data") / "kb"
    with KnowledgeBase.open(path, create=True, embedder=embedder) as kb:
        kb.ingest_documents([_doc(f"fixture:{pid}", text) for pid, text in PASSAGES.items()], total=len(PASSAGES))
    return path


@pytest.fixture()
def kb(kb_path: Path, embedder) -> Iterator[KnowledgeBase]:
    with KnowledgeBase.open(kb_path, embedder=embedder) as base:
        yield base


def _by_passage() -> dict[str, str | Exception]:
    return {PASSAGES[pid]: reply for pid, reply in SYNTH_REPLIES.items()}


@pytest.mark.integration
class TestSynthQueries:
    def test_parses_dedups_and_keeps_only_questions_that_find_their_chunk(self, kb: KnowledgeBase) -> None:
        kb.llm = ScriptedLLM(_by_passage())
        queries, report = synth_queries(kb, per_chunk=2, top_k=1)
        kept = {(q.query, q.positive) for q in queries}
        assert kept == {
            (PAYDAY, PASSAGES["pay1"]),
            ("When must staff use the virtual private network?", PASSAGES["vpn1"]),
            ("How quickly are support tickets answered by the service desk?", PASSAGES["tix1"]),
        }
        assert report.chunks == 5 and report.kept == 3 and report.not_found == 1
        assert report.duplicates == 2  # the repeated payday question and the echoed passage
        assert len(report.failed_chunks) == 1
        assert all(q.rank == 1 and q.source == "synthetic" and q.chunk_id.startswith(q.document_id) for q in queries)

    def test_a_seeded_sample_spreads_over_the_kb(self, kb: KnowledgeBase) -> None:
        llm = ScriptedLLM({})
        kb.llm = llm
        _, report = synth_queries(kb, sample=2, seed=3)
        asked = [pid for pid, text in PASSAGES.items() for prompt in llm.prompts if text in prompt]
        assert report.chunks == 2 and len(asked) == 2
        kb.llm = again = ScriptedLLM({})
        synth_queries(kb, sample=2, seed=3)
        assert [pid for pid, text in PASSAGES.items() for prompt in again.prompts if text in prompt] == asked
        kb.llm = ScriptedLLM({})
        assert synth_queries(kb, sample=10)[1].chunks == len(PASSAGES)

    def test_bad_arguments(self, kb: KnowledgeBase) -> None:
        with pytest.raises(ConfigError, match="limit and sample"):
            synth_queries(kb, sample=-1)
        with pytest.raises(ConfigError, match="per_chunk"):
            synth_queries(kb, per_chunk=0)
        with pytest.raises(ConfigError, match="top_k"):
            synth_queries(kb, top_k=0)


@pytest.mark.integration
class TestGeneratedNegatives:
    def test_plausible_wrong_passages_are_tagged_and_never_the_positive(self, kb: KnowledgeBase) -> None:
        wrong = "The payroll system transfers salaries on the 15th of each month."
        kb.llm = ScriptedLLM({
            "It must differ": "Payroll sends salaries on the last Friday of each month.",
            PAYDAY: f'Passage: "{wrong}"',
            "virtual private network": PASSAGES["vpn1"],  # the positive itself: dropped
        })
        pairs = [TrainingPair(PAYDAY, PASSAGES["pay1"]),
                 TrainingPair("When must staff use the virtual private network?", PASSAGES["vpn1"])]
        triplets = generate_negatives(kb.llm_client(), pairs, per_query=2)
        assert len(triplets) == 1
        assert triplets[0].negatives == [wrong, "Payroll sends salaries on the last Friday of each month."]
        assert triplets[0].source == "generated" and triplets[0].positive == PASSAGES["pay1"]
        with pytest.raises(ConfigError, match="no positive text"):
            generate_negatives(kb.llm_client(), [TrainingPair("q", document_ids=("d",))])


@pytest.mark.unit
class TestGeneratedNegativeFilter:
    POSITIVE = ("Salaries are paid on the last working day of each month. Bonuses follow in March, after the "
                "annual review closes.")
    ZH_POSITIVE = "工资在每月最后一个工作日发放。奖金在三月年度评审结束后发放。"

    def generated(self, reply: str, positive: str | None = None, query: str = PAYDAY) -> list[str]:
        from ragtune.llm.cached import CachedLLM

        llm = ScriptedLLM({"Question:": reply, "问题：": reply})
        triplets = generate_negatives(CachedLLM(llm), [TrainingPair(query, positive or self.POSITIVE)])
        self.prompts = llm.prompts
        return triplets[0].negatives if triplets else []

    def test_a_changed_detail_is_kept_and_the_model_s_framing_removed(self) -> None:
        wrong = "Salaries are paid on the first working day of each month. Bonuses follow in March."
        assert self.generated(wrong) == [wrong]
        assert self.generated(f"Here is a new passage that is wrong in the key detail:\n{wrong}") == [wrong]
        assert self.generated(f"{wrong}\n\nQuestion: {PAYDAY}") == [wrong]
        assert "wrong in the key detail" in self.prompts[0]
        zh = "工资在每月第一个工作日发放。奖金在三月发放。"
        assert self.generated(zh, self.ZH_POSITIVE, "工资哪天发？") == [zh]
        # A Chinese positive gets the instruction in Chinese.
        assert "关键细节是错的" in self.prompts[0] and "问题：工资哪天发？" in self.prompts[0]

    @pytest.mark.parametrize("reply", [
        "Salaries are paid on the last working day of each month.",  # an excerpt: nothing was changed
        "salaries are PAID on the last working day, of each month",  # the same, re-cased and re-punctuated
        PAYDAY,  # the question repeated
        f"The question is: {PAYDAY} The answer is the 15th.",
        "Here is a new passage that answers the question but is wrong in the key detail:",  # framing only
        "the bonus and the salary and the bonus and the salary and the bonus and the salary and the bonus",  # a loop
        # the question stitched to an excerpt: every word is the source's, only the seams are new
        f"{PAYDAY} Salaries are paid on the last working day of each month. Bonuses follow in March.",
        "This passage is wrong in the key detail: change a number, name, date or outcome.",  # the instruction
    ])
    def test_copies_echoes_and_loops_are_no_negatives(self, reply: str) -> None:
        assert self.generated(reply) == []

    def test_a_chinese_excerpt_or_echo_is_no_negative(self) -> None:
        assert self.generated("工资在每月最后一个工作日发放。", self.ZH_POSITIVE, "工资哪天发？") == []
        assert self.generated("问题是：工资哪天发？答案是十五号。", self.ZH_POSITIVE, "工资哪天发？") == []
        assert self.generated("这段文字的关键细节是错的，改动一个数字。", self.ZH_POSITIVE, "工资哪天发？") == []


@pytest.mark.unit
def test_questions_are_asked_for_in_the_passage_s_language() -> None:
    from ragtune.train.synthetic import synth_prompt

    assert synth_prompt(PASSAGES["pay1"], 2).startswith("Write 2 different questions")
    zh = synth_prompt("员工每月最后一个工作日领取工资，奖金在三月发放。", 3)
    assert "写出 3 个不同的问题" in zh and zh.endswith("员工每月最后一个工作日领取工资，奖金在三月发放。")


@pytest.mark.e2e
def test_data_commands_chain_into_training_files(kb_path: Path, tmp_path: Path, monkeypatch) -> None:
    from ragtune.cli import app

    # Negative prompts hold the positive passage too: their keys come first.
    replies: dict[str, str | Exception] = {
        "Question: " + PAYDAY: "The payroll system transfers salaries on the 2nd of each month.",
        "Question: When must staff": "The virtual private network is optional on public Wi-Fi networks.",
        "Question: How quickly": "The service desk answers support tickets within four weeks.",
        **_by_passage(),
    }
    scripted = ScriptedLLM(replies)
    monkeypatch.setattr("ragtune.kb._shared_llm", lambda *args: scripted)
    runner = CliRunner()
    kb = ["--kb", str(kb_path)]
    queries, triplets, generated = tmp_path / "q.jsonl", tmp_path / "t.jsonl", tmp_path / "g.jsonl"

    done = runner.invoke(app, ["data", "synth-queries", *kb, "--out", str(queries), "--per-chunk", "2",
                               "--top-k", "1", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["kept"] == 3
    pairs = read_pairs(queries)
    assert len(pairs) == 3 and all(p.positive and p.chunk_ids and p.document_ids for p in pairs)

    done = runner.invoke(app, ["data", "mine-negatives", *kb, "--pairs", str(queries), "--out", str(triplets),
                               "--rank-window", "1:4", "--negatives", "2", "--json"])
    assert done.exit_code == 0, done.output
    mined = read_triplets(triplets)
    assert mined and all(t.source == "mined" and t.positive not in t.negatives for t in mined)

    done = runner.invoke(app, ["data", "gen-negatives", *kb, "--pairs", str(queries), "--out", str(generated),
                               "--json"])
    assert done.exit_code == 0, done.output
    made = read_triplets(generated)
    assert len(made) == 3 and all(t.source == "generated" and len(t.negatives) == 1 for t in made)

    bad = runner.invoke(app, ["data", "mine-negatives", *kb, "--pairs", str(queries), "--out", str(triplets),
                              "--rank-window", "3-50"])
    assert bad.exit_code == 1 and "FIRST:LAST" in bad.output
    missing = runner.invoke(app, ["data", "gen-negatives", *kb, "--pairs", str(tmp_path / "none.jsonl"),
                                  "--out", str(generated), "--json"])
    assert missing.exit_code == 1 and "no such pairs file" in missing.stdout


@pytest.mark.integration
@pytest.mark.slow
def test_bundled_local_llm_writes_well_formed_questions_and_negatives(kb_path: Path, embedder) -> None:
    with KnowledgeBase.open(kb_path, embedder=embedder, llm="local", rewrite_timeout_s=120) as kb:
        queries, report = synth_queries(kb, per_chunk=2, top_k=5, limit=2)
        assert report.chunks == 2 and not report.failed_chunks
        assert all(isinstance(q.query, str) and q.query.strip() and q.positive in PASSAGES.values()
                   for q in queries)
        triplets = generate_negatives(kb.llm_client(), [TrainingPair(PAYDAY, PASSAGES["pay1"])])
        assert all(t.source == "generated" and t.negatives and t.positive not in t.negatives for t in triplets)


@pytest.mark.e2e
def test_thumbs_up_answers_become_pairs_whose_cited_chunk_is_never_a_negative(kb_path: Path, tmp_path: Path,
                                                                               embedder) -> None:
    import shutil
    import sqlite3

    from ragtune.cli import app
    from ragtune.feedback import FeedbackStore
    from ragtune.types import Answer, Citation

    path = tmp_path / "kb"
    shutil.copytree(kb_path, path)
    with KnowledgeBase.open(path, embedder=embedder) as kb:
        hits = kb.search(PAYDAY, k=3)
    # As the server records them: the numbered sources, and the ones the answer cites.
    answers = {
        "liked": Answer(id="liked", question=PAYDAY, answer="On the 25th [1].", grounded=True, sources=hits,
                        citations=[Citation(number=1, chunk_id=hits[0].chunk_id, document_id=hits[0].document_id,
                                            source=hits[0].source)]),
        "disliked": Answer(id="disliked", question="Who approves expenses?", answer="The CEO [2].", grounded=True,
                           sources=hits, citations=[Citation(number=2, chunk_id=hits[1].chunk_id,
                                                             document_id=hits[1].document_id, source=hits[1].source)]),
    }
    with FeedbackStore(path) as store:
        for answer in answers.values():
            store.record_answer(answer)
        store.add("liked", "up")
        store.add("liked", "up")  # rated twice: still one pair
        store.add("disliked", "up")
        store.add("disliked", "down", comment="wrong person")  # the latest rating counts

    runner = CliRunner()
    pairs_file, triplets = tmp_path / "fb.jsonl", tmp_path / "t.jsonl"
    done = runner.invoke(app, ["data", "feedback-pairs", "--kb", str(path), "--out", str(pairs_file), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["pairs"] == 1
    (pair,) = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    assert pair["query"] == PAYDAY and pair["positive"] == hits[0].text and pair["chunk_id"] == hits[0].chunk_id

    done = runner.invoke(app, ["data", "mine-negatives", "--kb", str(path), "--pairs", str(pairs_file),
                               "--out", str(triplets), "--rank-window", "1:5", "--negatives", "3", "--json"])
    assert done.exit_code == 0, done.output
    (mined,) = read_triplets(triplets)
    assert mined.negatives and hits[0].text not in mined.negatives

    # A knowledge base from before citations were recorded gains the column and still exports.
    conn = sqlite3.connect(path / "ragtune.db")
    conn.execute("ALTER TABLE answers DROP COLUMN cited")
    conn.close()
    with FeedbackStore(path) as store:
        assert {r.answer_id for r in store.records()} == {"liked", "disliked"}
