"""ragtune's exceptions; every message names the input and says what to do next."""

from __future__ import annotations


class RagtuneError(Exception):
    """Base class of every error ragtune raises on purpose."""


class ConfigError(RagtuneError):
    """A setting, option or recipe is invalid."""


class ParseError(RagtuneError):
    """A file could not be parsed (unknown type, corrupt, encrypted, too large)."""

    def __init__(self, source: str, cause: str) -> None:
        super().__init__(f"{source}: {cause}")
        self.source = source
        self.cause = cause


class FilterError(RagtuneError):
    """A metadata filter is malformed or names an unknown field or operator."""


class StoreError(RagtuneError):
    """The knowledge base store is missing, locked, inconsistent or opened with the wrong embedder."""


class EmbedderMismatchError(StoreError):
    """The knowledge base was built with another embedder than the one it is opened with."""


class LLMError(RagtuneError):
    """A language model could not be loaded or did not answer (names the backend, model and URL)."""
