"""The bundled SmolLM2, converted once per test run into a temporary cache; the GGUF-loaded original is kept."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ragtune.llm import LocalLLM


@dataclass
class BundledSmolLM2:
    llm: LocalLLM
    cache_dir: Path
    gguf_models: list[Any]  # every model transformers loaded from a GGUF file during the run
    gguf_tokenizers: list[Any]


def _recording(original: Callable[..., Any], into: list[Any]) -> Callable[..., Any]:
    def from_pretrained(*args: Any, **kwargs: Any) -> Any:
        loaded = original(*args, **kwargs)
        if kwargs.get("gguf_file"):
            into.append(loaded)
        return loaded

    return from_pretrained


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> BundledSmolLM2:
    """One conversion per test run; the GGUF loads are recorded so tests can count and compare them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_dir = tmp_path_factory.mktemp("model-cache")
    models: list[Any] = []
    tokenizers: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AutoModelForCausalLM, "from_pretrained", _recording(AutoModelForCausalLM.from_pretrained, models))
        patch.setattr(AutoTokenizer, "from_pretrained", _recording(AutoTokenizer.from_pretrained, tokenizers))
        llm = LocalLLM(cache_dir=cache_dir)
        yield BundledSmolLM2(llm, cache_dir, models, tokenizers)
