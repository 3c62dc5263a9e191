"""Routing decisions of mode auto: signals, hybrid/graph/decompose, retries, refusal advice, sub-questions."""

from __future__ import annotations

import pytest
from scripted_llm import ScriptedLLM

from ragtune.llm.cached import CachedLLM
from ragtune.retrieve.router import Router, llm_decomposer, split_question, usable_sub_queries
from ragtune.types import ChunkMeta, Hit

pytestmark = pytest.mark.unit


def _hit(text: str, dense: float | None = None) -> Hit:
    scores = {"dense": dense} if dense is not None else {}
    return Hit(chunk_id=text[:8], document_id="d", source="s", text=text, score=1.0, meta=ChunkMeta(), scores=scores)


def _signals(**changes):
    base = {"language": "en", "multi_hop_pattern": "", "global_pattern": "", "linked_entities": 0,
            "specific_entities": 1, "best_dense": 0.7, "lexical_support": 0.8,
            "union_support": 0.8, "hits": 5}
    return {**base, **changes}


class TestSignals:
    def test_patterns_entities_and_coverage(self):
        router = Router()
        hits = [_hit("Ada Park leads Project Lumen.", 0.62), _hit("The Lumen team works from Porto.", 0.55)]
        s = router.signals("Which office does the team of the project led by Ada Park work from?", hits,
                           linked_entities=1)
        assert s["multi_hop_pattern"] and s["language"] == "en" and s["best_dense"] == 0.62
        assert 0 < s["lexical_support"] < s["union_support"] <= 1
        zh = router.signals("周雅婷负责的项目的团队在哪个城市办公？", hits)
        assert zh["language"] == "zh" and zh["multi_hop_pattern"]
        assert router.signals("What are the main themes across all the chats?", [])["global_pattern"]
        assert not router.signals("What is the Wi-Fi password?", hits)["multi_hop_pattern"]


@pytest.mark.parametrize(("question", "multi"), [
    ("Who audits the supplier that manufactures part FAC-22?", True),
    ("Which ship carried the container batch ordered by Brava Coffee?", True),
    ("Did the dinner happen before Wolfgang left?", True),
    ("What is the time interval between the two meetings?", True),
    ("How many days passed between the launch and the first outage?", True),
    ("Notch signaling occurs between tumor cells and stromal cells.", False),
    ("Folate levels influence the association between homocysteine and stroke.", False),
    ("生产零件FAC-31的供应商由谁审计？", True),
    ("张伟提交报告之后发生了什么？", True),
    ("What is the Wi-Fi password?", False),
    ("Who is the person that was late?", False),
    ("年假有多少天？", False),
])
def test_multi_hop_patterns(question, multi):
    assert bool(Router().signals(question, [])["multi_hop_pattern"]) is multi


class TestDecide:
    def test_one_hit_covers_it_hybrid(self):
        assert Router().decide(_signals())[0] == "hybrid"

    def test_two_questions_in_one_graph_first(self):
        decision, reason = Router().decide(_signals(multi_hop_pattern="before"), ["A happened", "B happened"])
        assert decision == "graph" and "joins 2 questions" in reason

    def test_a_chain_of_relations_graph(self):
        assert Router().decide(_signals(multi_hop_pattern="led by"))[0] == "graph"

    def test_entity_dense_single_hop_questions_stay_hybrid(self):
        # Several named entities, terms spread over the top hits: a scientific claim looks like this, and the
        # graph only cost it quality and time (see Router.decide).
        decision, reason = Router().decide(_signals(linked_entities=4, lexical_support=0.4, union_support=0.9))
        assert decision == "hybrid" and reason == "no sign of a second hop"

    def test_nothing_specific_to_walk_from_hybrid(self):
        decision, reason = Router().decide(_signals(multi_hop_pattern="before", specific_entities=0))
        assert decision == "hybrid" and "nothing specific" in reason

    def test_global_questions_graph(self):
        assert Router().decide(_signals(global_pattern="main themes"))[0] == "graph"

    def test_without_a_graph_hybrid_or_decompose(self):
        router = Router(graph_available=False)
        assert router.decide(_signals(multi_hop_pattern="led by"))[0] == "hybrid"
        assert router.decide(_signals(global_pattern="overall"))[0] == "hybrid"
        assert router.retry("hybrid", []) is None
        assert router.retry("hybrid", ["a b", "c d"]) == "decompose"

    def test_retry_takes_another_path_once(self):
        router = Router()
        assert router.retry("hybrid", ["x y", "z w"]) == "decompose"
        assert router.retry("decompose", ["x y", "z w"]) == "graph"
        assert router.retry("hybrid", []) == "graph"
        assert router.retry("graph", []) is None
        assert router.retry("hybrid", [], _signals(specific_entities=0)) is None


class TestWeak:
    def test_weak_when_neither_lexical_nor_dense_match(self):
        router = Router(refusal_threshold=0.43, dense_languages=("en",))
        assert router.weak(_signals(lexical_support=0.2, best_dense=0.3))
        assert not router.weak(_signals(lexical_support=0.2, best_dense=0.5))
        assert not router.weak(_signals(lexical_support=0.6, best_dense=0.1))

    def test_languages_the_embedder_does_not_understand_fall_back_to_terms(self):
        router = Router(refusal_threshold=0.43, dense_languages=("en",))
        assert router.weak(_signals(language="zh", lexical_support=0.2, union_support=0.3, best_dense=0.9))
        assert not router.weak(_signals(language="zh", lexical_support=0.2, union_support=0.7, best_dense=0.1))


class TestSplit:
    @pytest.mark.parametrize(("question", "parts"), [
        ("Did Li Hua ask Adam about the fridge before Adam asked about the size of the fridge?",
         ["Li Hua ask Adam about the fridge", "Adam asked about the size of the fridge"]),
        ("Did Wolfgang arrive in Hong Kong after he informed Li Hua about his upcoming trip?",
         ["Wolfgang arrive in Hong Kong", "he informed Li Hua about his upcoming trip"]),
        ("Is the time interval between LiHua asking Jake for help and Li Hua asking the group about matches "
         "more than 2 days?", ["LiHua asking Jake for help", "Li Hua asking the group about matches"]),
        ("Question: Did Jennifer remind him about protein before she shared tips?",
         ["Jennifer remind him about protein", "she shared tips"]),
        ("张伟提交报告之前，李娜审核了哪份合同？", ["张伟提交报告", "李娜审核了哪份合同"]),
    ])
    def test_two_part_questions_split(self, question, parts):
        assert split_question(question) == parts

    @pytest.mark.parametrize("question", ["What is the Wi-Fi password?", "Who leads Lumen?", "年假有多少天？",
                                          "What did he do before?"])
    def test_single_questions_do_not(self, question):
        assert split_question(question) == []


class TestLLMSubQueries:
    QUESTION = "Did Yuriko ask Li Hua for help with her homepage before she booked a seat at Central Perk?"

    def test_echoes_and_unrelated_lines_are_dropped(self):
        lines = ["1. Did Yuriko ask Li Hua for help with her homepage?", f"2. {self.QUESTION}",
                 "3. What is the capital of France?", "- When did Yuriko book a seat at Central Perk?"]
        assert usable_sub_queries(self.QUESTION, lines) == [
            "Did Yuriko ask Li Hua for help with her homepage?", "When did Yuriko book a seat at Central Perk?"]

    def test_a_usable_reply_is_taken(self):
        llm = ScriptedLLM("Did Yuriko ask Li Hua for help with her homepage?\nWhen did Yuriko book Central Perk?")
        router = Router(decomposer=llm_decomposer(CachedLLM(llm)))
        assert router.sub_queries(self.QUESTION) == ["Did Yuriko ask Li Hua for help with her homepage?",
                                                     "When did Yuriko book Central Perk?"]

    def test_a_small_model_echoing_the_question_falls_back_to_the_rules(self):
        router = Router(decomposer=llm_decomposer(CachedLLM(ScriptedLLM(self.QUESTION))))
        assert router.sub_queries(self.QUESTION) == split_question(self.QUESTION) != []

    def test_a_failing_model_falls_back_to_the_rules(self):
        router = Router(decomposer=llm_decomposer(CachedLLM(ScriptedLLM(fail=True))))
        assert router.sub_queries(self.QUESTION) == split_question(self.QUESTION)
