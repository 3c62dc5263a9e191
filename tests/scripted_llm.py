"""A scripted LLM for unit tests of code that asks a model: canned replies, streamed word by word."""

from __future__ import annotations

import time
from collections.abc import Iterator


class ScriptedLLM:
    """Replies with canned text, one piece per word, and counts calls."""

    name = "scripted"

    def __init__(self, reply: str = "", *, delay: float = 0.0, fail: bool = False) -> None:
        self.reply = reply
        self.delay = delay
        self.fail = fail
        self.calls: list[list[dict[str, str]]] = []

    def stream(self, messages: list[dict[str, str]], **params: object) -> Iterator[str]:
        self.calls.append(messages)
        if self.fail:
            raise RuntimeError("server down")
        for word in self.reply.split(" "):
            if self.delay:
                time.sleep(self.delay)
            yield word + " "

    def chat(self, messages: list[dict[str, str]], **params: object) -> str:
        return "".join(self.stream(messages, **params))
