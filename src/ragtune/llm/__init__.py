"""Language models behind one protocol: in-process transformers, llama.cpp, or any OpenAI-compatible server."""

from ragtune.llm.base import LLM, GenerationParams, Message, truncate_at_stop, validate_messages
from ragtune.llm.bundled import BUNDLED_SMOLLM2, bundled_gguf_path
from ragtune.llm.factory import BACKENDS, load_llm
from ragtune.llm.llamacpp import LlamaCppLLM
from ragtune.llm.local import LocalLLM, converted_gguf_dir, default_cache_dir, format_chat
from ragtune.llm.openai import OpenAICompatibleLLM

__all__ = [
    "BACKENDS",
    "BUNDLED_SMOLLM2",
    "LLM",
    "GenerationParams",
    "LlamaCppLLM",
    "LocalLLM",
    "Message",
    "OpenAICompatibleLLM",
    "bundled_gguf_path",
    "converted_gguf_dir",
    "default_cache_dir",
    "format_chat",
    "load_llm",
    "truncate_at_stop",
    "validate_messages",
]
