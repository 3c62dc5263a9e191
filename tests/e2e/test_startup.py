"""What a command pays for before it answers: a process that never meets Chinese text does not load jieba's
dictionary (1.6 s on a 2-core CPU), one that embeds with an exported model does not import the onnx package
(1.6 s, needed only to export), and an answer that is quoted or refused does not load the LLM (torch, transformers
and the weights: about 7 s). All were paid by every `ragtune search` and `ragtune ask`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.llm.local import resolve_model
from ragtune.rag.claims import Vocabulary, terms_of

ENGLISH = {"keys.md": "API keys must be rotated every 90 days. The security team reviews rotations each quarter.\n",
           "lunch.md": "The canteen serves lunch from noon to two. Vegetarian dishes are marked green.\n"}
CHINESE = "# 休假制度\n\n全职员工每年享有二十天带薪年假。病假超过三天需要医院证明。\n"

# Runs in a fresh interpreter: what it imported and loaded is what a CLI command would have.
PROBE = """
import json, sys
from ragtune.kb import KnowledgeBase
import ragtune.store.text as text

english, mixed, question, chinese = sys.argv[1:5]
with KnowledgeBase.open(english) as kb:
    found = [h.source for h in kb.search(question, 3)]
    answer = kb.ask(question, answer_mode="extractive")
    refused = kb.ask("What is the capital of Peru?")
before = {"jieba": text._jieba_ready, "onnx": "onnx" in sys.modules, "torch": "torch" in sys.modules}
with KnowledgeBase.open(mixed) as kb:
    zh = [h.source for h in kb.search(chinese, 3)]
print(json.dumps({"found": found, "answer": answer.answer, "refused": answer.refused,
                  "peru_refused": refused.refused, "before": before,
                  "jieba_after": text._jieba_ready, "zh": zh}))
"""


def probe(english: Path, mixed: Path, question: str, chinese: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(english), str(mixed), question, chinese],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_an_english_search_and_a_quoted_or_refused_answer_load_no_jieba_onnx_or_llm(tmp_path: Path) -> None:
    from ragtune.kb import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in ENGLISH.items():
        (docs / name).write_text(text, encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "english", create=True) as kb:  # exports the embedder here if need be
        assert kb.ingest(docs).ok
    (docs / "leave.md").write_text(CHINESE, encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "mixed", create=True) as kb:
        assert kb.ingest(docs).ok
    # The bundled model's one-time conversion from GGUF (which needs torch) is done here if this run has not yet.
    resolve_model(BUNDLED_SMOLLM2)
    seen = probe(tmp_path / "english", tmp_path / "mixed", "How often must API keys be rotated?",
                 "病假超过几天需要医院证明？")
    assert seen["found"][0].endswith("keys.md")
    assert not seen["refused"] and "90 days" in seen["answer"]
    assert seen["peru_refused"]
    assert seen["before"] == {"jieba": False, "onnx": False, "torch": False}
    # Chinese still works the moment it comes: the dictionary loads then, and the Chinese page is found.
    assert seen["jieba_after"] is True and seen["zh"][0].endswith("leave.md")


@pytest.mark.unit
def test_a_vocabulary_is_the_terms_of_its_words_with_the_chinese_ones_analysed_when_needed() -> None:
    saying = Vocabulary("remind reminded announce 告诉 通知")
    asking = Vocabulary("ask asked 询问")
    assert "terms" not in vars(saying)  # the Chinese words not analysed yet
    assert "announc" in saying and "remind" in saying and "lunch" not in saying
    assert frozenset({"remind", "lunch"}) - saying == {"lunch"}
    assert frozenset({"announc", "lunch"}) & saying == {"announc"}
    assert "terms" not in vars(saying)  # Latin terms were enough
    assert "通知" in saying and frozenset({"通知", "remind", "午饭"}) - saying == {"午饭"}
    assert saying.terms == terms_of("remind reminded announce 告诉 通知") and {"告诉", "通知"} <= saying.terms
    both = saying | asking
    assert both.terms == saying.terms | asking.terms == terms_of("remind reminded announce 告诉 通知 ask asked 询问")
    assert frozenset({"询问", "announc", "lunch"}) - both == {"lunch"}


@pytest.mark.unit
def test_synonyms_of_latin_words_need_no_chinese_analysis() -> None:
    from ragtune.rag import claims

    # Each group is one script: the Latin table (built without jieba) then holds every Latin word's synonym.
    assert all(g.isascii() or not any(w.isascii() for w in g.split()) for g in claims._SYNONYM_GROUPS)
    assert terms_of("the fee and the maximum") == terms_of("the cost and the limit")
    assert terms_of("费用 上限") == terms_of("价格 最多")
