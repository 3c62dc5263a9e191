"""Builds an LLM from a backend name and its settings."""

from __future__ import annotations

from typing import Any, get_args

from ragtune.errors import ConfigError
from ragtune.llm.base import LLM
from ragtune.llm.bundled import BUNDLED_SMOLLM2
from ragtune.llm.llamacpp import LlamaCppLLM
from ragtune.llm.local import LocalLLM
from ragtune.llm.openai import DEFAULT_BASE_URL, OpenAICompatibleLLM
from ragtune.settings import LLMBackend

BACKENDS: tuple[str, ...] = get_args(LLMBackend)


def load_llm(
    backend: str = "local",
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    adapter: str | None = None,
    num_threads: int | None = None,
    **kwargs: Any,
) -> LLM:
    """'local' → transformers (bundled SmolLM2 by default); 'openai' → an OpenAI-compatible server;
    'llamacpp' → a GGUF file in llama.cpp. ``kwargs`` go to the backend's constructor."""
    if backend == "local":
        _reject(backend, base_url=base_url, api_key=api_key)
        return LocalLLM(model or BUNDLED_SMOLLM2, adapter=adapter, num_threads=num_threads, **kwargs)
    if backend == "openai":
        _reject(backend, adapter=adapter, num_threads=num_threads)
        if not model:
            raise ConfigError("the 'openai' LLM backend needs model= (the name the server serves the model under).")
        return OpenAICompatibleLLM(model, base_url=base_url or DEFAULT_BASE_URL, api_key=api_key, **kwargs)
    if backend == "llamacpp":
        _reject(backend, base_url=base_url, api_key=api_key, adapter=adapter)
        return LlamaCppLLM(model or BUNDLED_SMOLLM2, n_threads=num_threads, **kwargs)
    raise ConfigError(f"unknown LLM backend {backend!r} — choose one of {', '.join(BACKENDS)}.")


def _reject(backend: str, **settings: Any) -> None:
    """A setting the backend cannot use is an error: silently ignoring it would mislead."""
    given = [name for name, value in settings.items() if value is not None]
    if given:
        hint = (
            " (an OpenAI-compatible server serves a LoRA adapter under its own model name: pass that as model=)"
            if "adapter" in given and backend == "openai"
            else ""
        )
        raise ConfigError(f"the '{backend}' LLM backend does not take {', '.join(given)}{hint}.")
