"""LocalLLM on the real bundled SmolLM2: one-time GGUF conversion, generation, stop strings, scoring, adapters."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from ragtune.errors import ConfigError, LLMError
from ragtune.llm import LLM, LocalLLM, format_chat

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PARAGRAPH = [{"role": "user", "content": "Write a short paragraph about the ocean."}]


@pytest.fixture(scope="module")
def llm(smollm2: Any) -> LocalLLM:
    return smollm2.llm


@pytest.fixture(scope="module")
def paragraph(llm: LocalLLM) -> str:
    """The greedy answer to PARAGRAPH, generated once for the tests that compare against it."""
    return llm.chat(PARAGRAPH, max_tokens=24)


@contextmanager
def forward_calls(llm: LocalLLM) -> Iterator[list[int]]:
    """Counts the model's forward passes: one per generated token."""
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    handle = llm.model.register_forward_hook(count)
    try:
        yield calls
    finally:
        handle.remove()


class TestConversion:
    def test_bundled_model_is_converted_once_and_reused(
        self, smollm2: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = Path(smollm2.llm.path)
        assert path.parent == smollm2.cache_dir
        assert len(smollm2.gguf_models) == 1
        # Only the finished directory is left: the temporary one was renamed into place.
        assert [p.name for p in smollm2.cache_dir.iterdir()] == [path.name]
        before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
        with caplog.at_level(logging.INFO, logger="ragtune.llm.local"):
            again = LocalLLM(cache_dir=smollm2.cache_dir)
        assert again.path == smollm2.llm.path
        assert not [r for r in caplog.records if "convert" in r.getMessage()]
        assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before
        assert len(smollm2.gguf_models) == 1
        assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(before)

    def test_converted_logits_equal_the_gguf_models(self, smollm2: Any) -> None:
        inputs = smollm2.llm.tokenizer("The capital of France is", return_tensors="pt")
        with torch.inference_mode():
            expected = smollm2.gguf_models[0](**inputs).logits
            actual = smollm2.llm.model(**inputs).logits
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)

    def test_converted_tokenizer_formats_chats_like_the_gguf_one(self, smollm2: Any) -> None:
        messages = [{"role": "system", "content": "Be brief."}, *QUESTION]
        original = smollm2.gguf_tokenizers[0]
        text = format_chat(smollm2.llm.tokenizer, messages)
        assert text == format_chat(original, messages)
        assert text.endswith("<|im_start|>assistant\n")
        assert smollm2.llm.tokenizer.encode(text) == original.encode(text)


class TestLocalLLM:
    def test_attributes(self, llm: LocalLLM) -> None:
        assert isinstance(llm, LLM)
        assert llm.name == "SmolLM2-135M-Instruct"
        assert llm.context_window == 8192
        assert llm.count_tokens("The capital of France") == len(llm.tokenizer.encode("The capital of France"))
        assert llm.count_tokens("") == 0

    def test_chat_is_deterministic(self, llm: LocalLLM) -> None:
        first = llm.chat(QUESTION, max_tokens=20)
        assert "Paris" in first
        assert llm.chat(QUESTION, max_tokens=20) == first

    def test_stream_yields_pieces_while_generating(self, llm: LocalLLM, paragraph: str) -> None:
        pieces: list[str] = []
        calls_at_piece: list[int] = []
        with forward_calls(llm) as calls:
            for piece in llm.stream(PARAGRAPH, max_tokens=24):
                pieces.append(piece)
                calls_at_piece.append(calls[0])
        assert len(pieces) > 1
        # The first piece was in our hands while the model still had tokens to generate.
        assert calls_at_piece[0] < calls[0]
        assert "".join(pieces) == paragraph

    def test_closing_a_stream_early_stops_generation(self, llm: LocalLLM) -> None:
        with forward_calls(llm) as calls:
            stream = llm.stream(PARAGRAPH, max_tokens=200)
            next(stream)
            stream.close()  # type: ignore[attr-defined]
            stopped_at = calls[0]
        assert stopped_at < 20

    def test_stop_string_cuts_output_and_ends_generation(self, llm: LocalLLM, paragraph: str) -> None:
        stop = paragraph.split()[5]
        with forward_calls(llm) as calls:
            cut = llm.chat(PARAGRAPH, max_tokens=24, stop=[stop])
        assert cut == paragraph[: paragraph.index(stop)]
        assert calls[0] < llm.count_tokens(paragraph)
        assert "".join(llm.stream(PARAGRAPH, max_tokens=24, stop=["zzz", stop])) == cut

    def test_max_tokens_is_respected(self, llm: LocalLLM, paragraph: str) -> None:
        with forward_calls(llm) as calls:
            short = llm.chat(PARAGRAPH, max_tokens=5)
        assert calls[0] == 5
        assert short and paragraph.startswith(short)
        assert llm.count_tokens(short) <= 5

    def test_repetition_controls_stop_loops_without_penalising_copying(self, llm: LocalLLM) -> None:
        looping = [{"role": "user", "content": "Say 'apple' 20 times."}]
        plain = llm.chat(looping, max_tokens=40)
        assert plain.lower().count("apple") >= 5  # SmolLM2 loops when asked to
        controlled = llm.chat(looping, max_tokens=40, no_repeat_ngram_size=2, repetition_penalty=1.3)
        ids = llm.tokenizer.encode(controlled, add_special_tokens=False)
        pairs = list(zip(ids, ids[1:], strict=False))
        assert len(pairs) == len(set(pairs))  # no generated 2-gram twice
        # The prompt's tokens are not penalised: a phrase from the prompt is still copied whole.
        copy = [{"role": "user", "content": "Repeat exactly: The Tunnelbeam VPN is mandatory."}]
        assert "Tunnelbeam VPN" in llm.chat(copy, max_tokens=16, no_repeat_ngram_size=2, repetition_penalty=1.3)

    def test_sampling_is_reproducible_with_a_seed_and_leaves_global_rng_alone(self, llm: LocalLLM) -> None:
        state = torch.get_rng_state()
        first = llm.chat(QUESTION, max_tokens=6, temperature=1.0, seed=7)
        assert llm.chat(QUESTION, max_tokens=6, temperature=1.0, seed=7) == first
        assert torch.equal(torch.get_rng_state(), state)

    def test_generation_failure_is_reported(self, llm: LocalLLM, monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(**kwargs: object) -> None:
            raise RuntimeError("out of memory")

        monkeypatch.setattr(llm.model, "generate", broken)
        with pytest.raises(LLMError, match="failed while generating: out of memory"):
            llm.chat(QUESTION)

    def test_bad_requests_fail_before_generating(self, llm: LocalLLM) -> None:
        with pytest.raises(ConfigError, match="role"):
            llm.stream([{"role": "robot", "content": "hi"}])
        with pytest.raises(ConfigError, match="max_tokens"):
            llm.chat(QUESTION, max_tokens=0)
        with pytest.raises(LLMError, match="context window of 8192"):
            llm.chat([{"role": "user", "content": "word " * 9000}])


class TestChatMany:
    CONVERSATIONS = [QUESTION, PARAGRAPH, [{"role": "user", "content": "Name a colour."}]]

    def test_batched_replies_come_back_in_order_and_match_single_generation(
        self, llm: LocalLLM, paragraph: str
    ) -> None:
        with forward_calls(llm) as calls:
            replies = llm.chat_many(self.CONVERSATIONS, max_tokens=24)
        # One forward pass per generated token for the whole batch, not per conversation.
        assert calls[0] <= 24
        assert replies[1] == paragraph
        assert replies == [llm.chat(c, max_tokens=24) for c in self.CONVERSATIONS]
        assert "Paris" in replies[0]

    def test_batches_of_any_size_give_the_same_replies(self, llm: LocalLLM) -> None:
        together = llm.chat_many(self.CONVERSATIONS, max_tokens=12)
        with forward_calls(llm) as calls:
            one_by_one = llm.chat_many(self.CONVERSATIONS, max_tokens=12, batch_size=1)
        assert one_by_one == together
        assert calls[0] > 12  # three separate generations

    def test_stop_strings_cut_each_reply(self, llm: LocalLLM, paragraph: str) -> None:
        stop = paragraph.split()[5]
        cut = llm.chat_many([PARAGRAPH, QUESTION], max_tokens=24, stop=[stop])
        assert cut[0] == paragraph[: paragraph.index(stop)]
        assert cut[1] == llm.chat(QUESTION, max_tokens=24, stop=[stop])

    def test_bad_requests_fail_before_generating(self, llm: LocalLLM) -> None:
        assert llm.chat_many([]) == []
        with pytest.raises(ConfigError, match="batch_size"):
            llm.chat_many([QUESTION], batch_size=0)
        with pytest.raises(ConfigError, match="max_tokens"):
            llm.chat_many([QUESTION], max_tokens=0)
        with pytest.raises(LLMError, match="conversation 2 is .* context window of 8192"):
            llm.chat_many([QUESTION, [{"role": "user", "content": "word " * 9000}]])

    def test_generation_failure_is_reported(self, llm: LocalLLM, monkeypatch: pytest.MonkeyPatch) -> None:
        def broken(**kwargs: object) -> None:
            raise RuntimeError("out of memory")

        monkeypatch.setattr(llm.model, "generate", broken)
        with pytest.raises(LLMError, match="failed while generating: out of memory"):
            llm.chat_many([QUESTION])


class TestScoreYesNo:
    @staticmethod
    def relevance(query: str, passage: str) -> str:
        return f"Query: {query}\nPassage: {passage}\nIs the passage relevant to the query? Answer yes or no."

    # Checked on the bundled model: it ranks each relevant passage above the irrelevant one.
    CASES = [
        ("Where is the Eiffel Tower?", "The Eiffel Tower is located in Paris, France.",
         "Bananas are a good source of potassium."),
        ("What do cats eat?", "Cats eat meat such as fish and chicken.", "The stock market fell on Monday."),
        ("What is the boiling point of water?", "Water boils at 100 degrees Celsius at sea level.",
         "Hamlet is a tragedy written by William Shakespeare."),
    ]

    def test_relevant_passage_scores_above_irrelevant_one(self, llm: LocalLLM) -> None:
        prompts = [self.relevance(q, p) for q, relevant, irrelevant in self.CASES for p in (relevant, irrelevant)]
        scores = llm.score_yes_no(prompts, batch_size=4)
        assert len(scores) == len(prompts)
        for relevant, irrelevant in zip(scores[::2], scores[1::2], strict=True):
            assert relevant > irrelevant
        # Left padding in a batch must not change a prompt's score.
        alone = llm.score_yes_no(prompts[:1]) + llm.score_yes_no(prompts[3:4])
        assert alone == pytest.approx([scores[0], scores[3]], abs=1e-3)

    def test_empty_and_invalid_input(self, llm: LocalLLM) -> None:
        assert llm.score_yes_no([]) == []
        with pytest.raises(ConfigError, match="list of strings"):
            llm.score_yes_no("Is it?")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="batch_size"):
            llm.score_yes_no(["Is it?"], batch_size=0)


class TestLoadedWhenNeeded:
    """A model directory loads its weights at the first generation, not when the LLM is made."""

    TEXTS = ("The capital of France", "", "  two leading spaces", "年假有多少天？全职员工每年享有二十天带薪年假。",
             "<|im_start|>user\nhi<|im_end|>", "tabs\tand\nnew lines 😀", "FAC-22 costs $1,250.00 (net)")

    def test_counts_and_window_before_loading_equal_the_loaded_models(self, llm: LocalLLM) -> None:
        fresh = LocalLLM(llm.path)
        assert not fresh.loaded
        assert fresh.context_window == llm.context_window == 8192
        before = [fresh.count_tokens(text) for text in self.TEXTS]
        assert not fresh.loaded  # counting needs no weights
        assert before == [len(llm.tokenizer.encode(text, add_special_tokens=False)) for text in self.TEXTS]
        assert fresh.chat(QUESTION, max_tokens=12) == llm.chat(QUESTION, max_tokens=12)
        assert fresh.loaded
        assert [fresh.count_tokens(text) for text in self.TEXTS] == before

    def test_counts_ignore_a_truncation_the_tokenizer_file_configures(self, llm: LocalLLM, tmp_path: Path) -> None:
        import json

        copy = tmp_path / "truncating"
        copy.mkdir()
        for item in Path(llm.path).iterdir():
            if item.name != "tokenizer.json":
                (copy / item.name).symlink_to(item)
        spec = json.loads((Path(llm.path) / "tokenizer.json").read_text(encoding="utf-8"))
        spec["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
        (copy / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
        fresh = LocalLLM(str(copy))
        assert not fresh.loaded
        text = " ".join(self.TEXTS)
        assert fresh.count_tokens(text) == llm.count_tokens(text) > 8

    def test_threads_that_need_the_model_at_once_load_it_once(
        self, llm: LocalLLM, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fresh = LocalLLM(llm.path)
        loads = []
        real = LocalLLM._load

        def slow(name: str, path: str) -> tuple[Any, Any]:
            loads.append(path)
            time.sleep(0.5)  # long enough for every thread to arrive while the first loads
            return real(name, path)

        monkeypatch.setattr(LocalLLM, "_load", staticmethod(slow))
        with ThreadPoolExecutor(4) as pool:
            models = list(pool.map(lambda _: fresh.model, range(4)))
        assert loads == [llm.path]
        assert all(m is models[0] for m in models)

    @pytest.mark.parametrize("damage", ["config", "weights"])
    def test_a_directory_that_cannot_load_fails_when_made(self, llm: LocalLLM, tmp_path: Path, damage: str) -> None:
        broken = tmp_path / "broken"
        shutil.copytree(llm.path, broken)
        if damage == "config":
            (broken / "config.json").write_text("{not json", encoding="utf-8")
        else:
            (broken / "model.safetensors").unlink()
        with pytest.raises(LLMError, match="could not be loaded"):
            LocalLLM(str(broken))


class TestLoadErrors:
    def test_missing_directory_is_named(self, tmp_path: Path) -> None:
        missing = str(tmp_path / "no-such-model")
        with pytest.raises(LLMError, match="no-such-model.*hub id this machine can reach"):
            LocalLLM(missing)

    def test_directory_without_a_model_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(LLMError, match=f"{tmp_path} is not a Hugging Face causal-LM directory"):
            LocalLLM(str(tmp_path))

    def test_missing_gguf_file_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(LLMError, match="model.gguf: no such GGUF file"):
            LocalLLM(str(tmp_path / "model.gguf"))

    @pytest.mark.parametrize(
        ("kwargs", "expected"), [({"num_threads": 0}, "num_threads"), ({"device": "gpu7"}, "device")]
    )
    def test_invalid_settings(self, kwargs: dict[str, object], expected: str) -> None:
        with pytest.raises(ConfigError, match=expected):
            LocalLLM("unused", **kwargs)  # type: ignore[arg-type]


class TestAdapter:
    # peft 0.21 calls a transformers 5 method that is deprecated; nothing ragtune can change.
    @pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
    def test_lora_adapter_is_applied(self, llm: LocalLLM, tmp_path: Path) -> None:
        peft = pytest.importorskip("peft", reason="the 'train' extra (peft) is not installed")
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(llm.path)
        # Random (not zero) LoRA weights, so the adapter visibly changes the model.
        config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        reference = peft.get_peft_model(base, config).eval()
        reference.save_pretrained(tmp_path / "adapter")
        inputs = llm.tokenizer("The capital of France is", return_tensors="pt")
        with torch.inference_mode():
            expected = reference(**inputs).logits
            untuned = llm.model(**inputs).logits
        del reference, base

        tuned = LocalLLM(llm.path, adapter=str(tmp_path / "adapter"))
        with torch.inference_mode():
            actual = tuned.model(**inputs).logits
        torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-3)
        assert not torch.allclose(actual, untuned, atol=1e-2)

    def test_missing_peft_says_which_extra(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setitem(sys.modules, "peft", None)
        with pytest.raises(LLMError, match=r"install the 'train' extra: pip install 'ragtune\[train\]'"):
            LocalLLM("unused", adapter=str(tmp_path))

    def test_adapter_directory_must_hold_an_adapter(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="no adapter_config.json"):
            LocalLLM("unused", adapter=str(tmp_path))

