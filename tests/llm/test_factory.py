"""load_llm: backend names, the settings each backend accepts, and the errors for the rest."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from ragtune.errors import ConfigError, LLMError
from ragtune.llm import LocalLLM, OpenAICompatibleLLM, load_llm


@pytest.mark.unit
class TestLoadLLM:
    def test_unknown_backend_lists_the_known_ones(self) -> None:
        with pytest.raises(ConfigError, match="unknown LLM backend 'vllm' — choose one of local, openai, llamacpp"):
            load_llm("vllm")

    def test_openai(self) -> None:
        llm = load_llm("openai", model="qwen", base_url="http://10.0.0.5:8000/v1", api_key="k", timeout=5)
        assert isinstance(llm, OpenAICompatibleLLM)
        assert (llm.name, llm.url, llm.timeout) == ("qwen", "http://10.0.0.5:8000/v1/chat/completions", 5)

    def test_openai_needs_a_model_name(self) -> None:
        with pytest.raises(ConfigError, match="needs model="):
            load_llm("openai")

    @pytest.mark.parametrize(
        ("backend", "settings", "expected"),
        [
            ("openai", {"model": "m", "adapter": "lora/"}, "does not take adapter .*pass that as model="),
            ("openai", {"model": "m", "num_threads": 2}, "does not take num_threads"),
            ("local", {"base_url": "http://x/v1"}, "'local' LLM backend does not take base_url"),
            ("llamacpp", {"api_key": "k", "adapter": "a"}, "does not take api_key, adapter"),
        ],
    )
    def test_settings_a_backend_cannot_use_are_rejected(
        self, backend: str, settings: dict[str, Any], expected: str
    ) -> None:
        with pytest.raises(ConfigError, match=expected):
            load_llm(backend, **settings)

    def test_llamacpp_without_the_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "llama_cpp", None)
        with pytest.raises(LLMError, match="'llamacpp' extra"):
            load_llm("llamacpp")


@pytest.mark.integration
def test_local(smollm2: Any) -> None:
    llm = load_llm("local", model=smollm2.llm.path, num_threads=1)
    assert isinstance(llm, LocalLLM)
    assert llm.path == smollm2.llm.path
