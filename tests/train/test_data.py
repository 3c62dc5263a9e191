"""Data loaders for every format, the shared chat template, and the assistant-only label mask."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from train_helpers import write_jsonl

from ragtune.llm.local import _SMOLLM2_TEMPLATE, chat_template, format_chat
from ragtune.train.data import (
    IGNORE_INDEX,
    DataError,
    encode_chat,
    feedback_prompt,
    load_examples,
    split_eval,
    tokenize_sft,
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the refund window?"},
    {"role": "assistant", "content": "14 days [1]."},
    {"role": "user", "content": "And for Enterprise?"},
    {"role": "assistant", "content": "45 days [2]."},
]


@pytest.mark.unit
class TestFormats:
    def test_alpaca(self, tmp_path: Path) -> None:
        path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Sum", "input": "1+1", "output": "2", "system": "S"}])
        (example,) = load_examples(path, kind="sft")
        assert example["messages"] == [
            {"role": "system", "content": "S"}, {"role": "user", "content": "Sum\n\n1+1"},
            {"role": "assistant", "content": "2"},
        ]

    def test_messages_and_sharegpt_agree(self, tmp_path: Path) -> None:
        messages = write_jsonl(tmp_path / "m.jsonl", [{"messages": CONVERSATION}])
        roles = {"system": "system", "user": "human", "assistant": "gpt"}
        sharegpt = write_jsonl(
            tmp_path / "s.jsonl",
            [{"conversations": [{"from": roles[m["role"]], "value": m["content"]} for m in CONVERSATION]}],
        )
        expected = [{"messages": CONVERSATION}]
        assert load_examples(messages, kind="sft") == load_examples(sharegpt, kind="sft") == expected

    def test_plain_text_file(self, tmp_path: Path) -> None:
        path = tmp_path / "corpus.txt"
        path.write_text("First paragraph.\n\nSecond one.\n")
        assert load_examples(path, kind="sft") == [{"text": "First paragraph."}, {"text": "Second one."}]

    def test_preference_and_kto(self, tmp_path: Path) -> None:
        pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "chosen": "good", "rejected": "bad"}])
        assert load_examples(pairs, kind="preference") == [{
            "prompt": [{"role": "user", "content": "Q"}],
            "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}],
        }]
        kto = write_jsonl(tmp_path / "k.jsonl", [{"prompt": "Q", "completion": "A", "label": False}])
        assert load_examples(kto, kind="kto")[0]["label"] is False

    def test_feedback_export(self, tmp_path: Path) -> None:
        rows = [
            # Extra keys of the server's export (comment, answer_id, created_at) are ignored.
            {"question": "Q1", "answer": "A1", "rating": "up", "comment": "ok", "answer_id": "a1", "created_at": "t"},
            {"question": "Q2", "answer": "wrong", "rating": "down", "corrected_answer": "right",
             "contexts": ["source one", "source two"]},
            {"question": "Q3", "answer": "bad", "rating": "down"},
        ]
        path = write_jsonl(tmp_path / "feedback.jsonl", rows)
        sft = load_examples(path, kind="sft")
        assert [ex["messages"][-1]["content"] for ex in sft] == ["A1", "right"]
        # With its sources, the prompt is the RAG pipeline's own answer prompt.
        assert "[1] source one" in sft[1]["messages"][-2]["content"]
        assert sft[1]["messages"][:-1] == feedback_prompt("Q2", ["source one", "source two"])
        (pair,) = load_examples(path, kind="preference")
        assert (pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == ("right", "wrong")
        kto = load_examples(path, kind="kto")
        assert [(r["completion"][0]["content"], r["label"]) for r in kto] == [
            ("A1", True), ("wrong", False), ("right", True), ("bad", False)
        ]

    def test_llamafactory_dataset_info(self, tmp_path: Path) -> None:
        write_jsonl(tmp_path / "alpaca.jsonl", [{"q": "Hi", "a": "Hello"}])
        write_jsonl(tmp_path / "chat.jsonl", [{"conversations": [{"from": "human", "value": "Hi"},
                                                                  {"from": "gpt", "value": "Hello"}]}])
        write_jsonl(tmp_path / "rank.jsonl", [{"instruction": "Hi", "chosen": "Hello", "rejected": "Go away"}])
        info = {
            "alp": {"file_name": "alpaca.jsonl", "columns": {"prompt": "q", "response": "a"}},
            "chat": {"file_name": "chat.jsonl", "formatting": "sharegpt"},
            "pairs": {"file_name": "rank.jsonl", "ranking": True},
        }
        (tmp_path / "dataset_info.json").write_text(json.dumps(info))
        path = tmp_path / "dataset_info.json"
        expected = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}]
        assert load_examples(path, kind="sft", dataset="alp") == expected
        assert load_examples(path, kind="sft", dataset="chat") == expected
        (pair,) = load_examples(path, kind="preference", dataset="pairs")
        assert pair["rejected"] == [{"role": "assistant", "content": "Go away"}]
        with pytest.raises(DataError, match="choose one with --set data.dataset"):
            load_examples(path, kind="sft")
        with pytest.raises(DataError, match="needs a ranking dataset"):
            load_examples(path, kind="preference", dataset="alp")

    def test_errors_name_file_and_row(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.jsonl"
        path.write_text('{"instruction": "x", "output": "y"}\n{not json}\n')
        with pytest.raises(DataError, match=r"bad.jsonl line 2: not valid JSON"):
            load_examples(path, kind="sft")
        path.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"}\n')
        with pytest.raises(DataError, match=r"bad.jsonl row 2: not a valid alpaca row"):
            load_examples(path, kind="sft")
        with pytest.raises(DataError, match="cannot train DPO/ORPO"):
            load_examples(path, kind="preference")
        with pytest.raises(DataError, match="no such file"):
            load_examples(tmp_path / "none.jsonl", kind="sft")

    def test_split_is_seeded(self) -> None:
        rows = [{"i": i} for i in range(20)]
        train, held = split_eval(rows, 0.1, seed=3)
        assert len(held) == 2 and len(train) == 18
        assert (train, held) == split_eval(rows, 0.1, seed=3)


@pytest.mark.integration
class TestChatTemplate:
    def test_marked_template_renders_identically(self, tokenizer: Any) -> None:
        assert tokenizer.chat_template == _SMOLLM2_TEMPLATE
        marked = chat_template(tokenizer)
        assert "{% generation %}" in marked
        conversations = [CONVERSATION, CONVERSATION[1:], CONVERSATION[1:2], CONVERSATION[:4]]
        for messages in conversations:
            for generation_prompt in (True, False):
                original = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt,
                                                         tokenize=True, return_dict=True)["input_ids"]
                ours = tokenizer.apply_chat_template(messages, chat_template=marked,
                                                     add_generation_prompt=generation_prompt, tokenize=True,
                                                     return_dict=True)["input_ids"]
                assert list(ours) == list(original)
        # Inference prompts (format_chat, what LocalLLM sends) are token-identical to the model's own template.
        prompt = format_chat(tokenizer, CONVERSATION[:4])
        assert prompt == tokenizer.apply_chat_template(CONVERSATION[:4], add_generation_prompt=True, tokenize=False)


def _learned_text(tokenizer: Any, ids: list[int], labels: list[int]) -> list[str]:
    """The decoded runs of consecutive learned (non -100) tokens."""
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(ids, labels, strict=True):
        learned = label != IGNORE_INDEX
        if learned:
            assert label == token
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = learned
    return [tokenizer.decode(run) for run in runs]


@pytest.mark.integration
class TestLabelMask:
    def test_only_assistant_tokens_are_learned(self, tokenizer: Any) -> None:
        ids, labels = encode_chat(tokenizer, CONVERSATION)
        assert _learned_text(tokenizer, ids, labels) == ["14 days [1].<|im_end|>", "45 days [2].<|im_end|>"]
        # Everything else — system prompt, user turns, role headers — is masked.
        masked = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX])
        assert "Be brief." in masked and "What is the refund window?" in masked and "assistant" in masked
        assert "14 days" not in masked

    def test_prefix_fallback_gives_the_same_mask(self, tokenizer: Any) -> None:
        """A template without markers that ragtune does not know is masked by rendering prefixes."""
        marked_ids, marked_labels = encode_chat(tokenizer, CONVERSATION)
        unknown = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
        unknown.chat_template = _SMOLLM2_TEMPLATE + "{# a variant ragtune ships no marked copy of #}"
        assert chat_template(unknown) == unknown.chat_template
        ids, labels = encode_chat(unknown, CONVERSATION)
        assert ids == marked_ids
        # The fallback learns the reply and its end token; the newline after <|im_end|> is not learned by either.
        assert labels == marked_labels

    def test_text_learns_every_token_and_truncation_is_warned(self, tokenizer: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
        examples = [{"text": "word " * 50}, {"messages": CONVERSATION}]
        with caplog.at_level(logging.INFO, logger="ragtune.train.data"):
            rows, stats = tokenize_sft(tokenizer, examples, max_seq_len=20)
        assert stats["truncated"] == 2 and stats["max"] > 20
        assert "will be truncated" in caplog.text and "token lengths of 2 examples" in caplog.text
        assert all(len(row["input_ids"]) <= 20 for row in rows)
        assert rows[0]["labels"] == rows[0]["input_ids"]
        # The conversation's answers lie beyond 20 tokens, so truncation left nothing to learn and it was dropped.
        assert len(rows) == 1
