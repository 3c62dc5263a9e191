"""Token counting for chunk sizes: character spans of tokens, from the embedder's tokenizer or a regex fallback."""

from __future__ import annotations

import bisect
import re
from typing import Any, Protocol

from ragtune.text import HAN, KANA

# Words, single CJK characters, and single other symbols: close to what subword tokenizers count.
_TOKEN_RE = re.compile(f"[{KANA}{HAN}]|[^\\W_]+|[^\\s\\w]")


class TokenCounter(Protocol):
    """Gives the character span of every token of a text."""

    def spans(self, text: str) -> list[tuple[int, int]]: ...


class RegexTokenCounter:
    """Tokenizer-free fallback: words, CJK characters and punctuation each count as one token."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _TOKEN_RE.finditer(text)]


class HFTokenCounter:
    """Spans from a Hugging Face fast tokenizer (the embedder's own, so chunk sizes match what it sees)."""

    # Long texts are tokenized in windows: one huge input is slow and memory-hungry.
    _WINDOW = 100_000

    def __init__(self, tokenizer: Any) -> None:
        from tokenizers import Tokenizer

        # A transformers fast tokenizer, or a bare `tokenizers.Tokenizer` (the ONNX embedder's).
        backend = tokenizer if isinstance(tokenizer, Tokenizer) else getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError("HFTokenCounter needs a fast tokenizer (one with offset mapping)")

        # A private copy without truncation: counting must see every token, and the model's own
        # tokenizer must keep its settings.
        self._tokenizer = Tokenizer.from_str(backend.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def spans(self, text: str) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        pos = 0
        while pos < len(text):
            end = min(len(text), pos + self._WINDOW)
            if end < len(text):
                space = text.rfind(" ", pos, end)
                end = space if space > pos else end
            encoding = self._tokenizer.encode(text[pos:end], add_special_tokens=False)
            out.extend((pos + s, pos + e) for s, e in encoding.offsets if e > s)
            pos = end
        return out


class TokenIndex:
    """Counts tokens inside any character range of one text in O(log n), after tokenizing it once."""

    def __init__(self, text: str, counter: TokenCounter) -> None:
        self.starts = [s for s, _ in counter.spans(text)]

    def count(self, start: int, end: int) -> int:
        """Number of tokens that start inside [start, end)."""
        return bisect.bisect_left(self.starts, end) - bisect.bisect_left(self.starts, start)

    def token_at_or_after(self, pos: int) -> int:
        """Index of the first token starting at or after ``pos``."""
        return bisect.bisect_left(self.starts, pos)
