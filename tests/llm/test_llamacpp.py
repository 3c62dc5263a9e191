"""LlamaCppLLM: the install hint when llama-cpp-python is missing, and its use of the Llama API (on a stand-in)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from ragtune.errors import ConfigError, LLMError
from ragtune.llm import LLM, LlamaCppLLM, bundled_gguf_path

pytestmark = pytest.mark.unit


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed, whatever this machine has
    with pytest.raises(LLMError, match=r"install the 'llamacpp' extra: pip install 'ragtune\[llamacpp\]'"):
        LlamaCppLLM("model.gguf")


@pytest.mark.parametrize(("kwargs", "expected"), [({"n_ctx": 0}, "n_ctx"), ({"n_threads": 0}, "n_threads")])
def test_invalid_settings(kwargs: dict[str, int], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        LlamaCppLLM("model.gguf", **kwargs)  # type: ignore[arg-type]


class FakeLlama:
    """Stands in for llama_cpp.Llama (which compiles llama.cpp on install), recording how it is called."""

    instances: list[FakeLlama] = []

    def __init__(self, model_path: str, **kwargs: Any) -> None:
        self.model_path = model_path
        self.kwargs = kwargs
        self.calls: list[dict[str, Any]] = []
        FakeLlama.instances.append(self)

    def n_ctx(self) -> int:
        return self.kwargs["n_ctx"]

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(range(len(text.split())))

    def create_chat_completion(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        yield {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
        for piece in ("Paris", " is", " the capital."):
            yield {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


@pytest.fixture()
def fake_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> type[FakeLlama]:
    module = types.ModuleType("llama_cpp")
    module.Llama = FakeLlama  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    FakeLlama.instances = []
    return FakeLlama


def test_chat_and_stream_map_onto_create_chat_completion(fake_llama_cpp: type[FakeLlama]) -> None:
    llm = LlamaCppLLM("SmolLM2-135M-Instruct", n_ctx=2048, n_threads=1)
    llama = fake_llama_cpp.instances[0]
    assert Path(llama.model_path) == bundled_gguf_path()
    assert llama.kwargs == {"n_ctx": 2048, "n_threads": 1, "verbose": False}
    assert isinstance(llm, LLM)
    assert llm.context_window == 2048
    assert llm.count_tokens("three small words") == 3

    messages = [{"role": "user", "content": "Capital of France?"}]
    assert list(llm.stream(messages, max_tokens=8, stop=["\n"], seed=2)) == ["Paris", " is", " the capital."]
    assert llm.chat(messages) == "Paris is the capital."
    assert llama.calls[0] == {
        "messages": messages, "max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
        "stop": ["\n"], "seed": 2, "stream": True, "repeat_penalty": 1.0,
    }


def test_missing_model_file(fake_llama_cpp: type[FakeLlama], tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="model.gguf: no such GGUF file"):
        LlamaCppLLM(str(tmp_path / "model.gguf"))
