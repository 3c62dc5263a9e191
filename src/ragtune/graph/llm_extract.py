"""Entities from an LLM, on top of the rules: with a capable OpenAI-compatible model configured, each chunk is also
read by the model, which names the people, organisations, places and things it mentions — including those the
tagger misses (lower-case product names, entities named by a descriptive phrase). The rule-based mentions are
always kept; the model only adds. Optional (``graph_extractor = "llm"``): one cached LLM call per chunk."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from ragtune.graph.extract import EXTRACTOR_VERSION, KIND_WEIGHTS, EntityExtractor, Mention, entity_key, is_chinese
from ragtune.text import HAN_RE

__all__ = ["LLMEntityExtractor", "parse_entities"]

log = logging.getLogger(__name__)

#: Replies to many prompts, in order, an exception for a prompt that failed (``CachedLLM.generate_many``).
GenerateMany = Callable[[Sequence[str]], Sequence[str | Exception]]

PROMPTS = {
    "en": (
        "List the named entities in the text below: people, organisations, places, products, projects and events. "
        "One per line, written as in the text, then ' | ' and its type (person, org, place or thing). Nothing "
        "else.\n\nText:\n{text}\n\nEntities:"
    ),
    "zh": (
        "列出下面文本中的命名实体：人物、组织、地点、产品、项目和事件。每行一个，按原文书写，后接“ | ”和类型"
        "（person、org、place 或 thing）。不要写其他内容。\n\n文本：\n{text}\n\n实体："
    ),
}

_KINDS = {
    "person": "person", "people": "person", "人物": "person", "人": "person",
    "org": "org", "organisation": "org", "organization": "org", "company": "org", "组织": "org", "机构": "org",
    "place": "place", "location": "place", "地点": "place",
    "thing": "thing", "product": "thing", "project": "thing", "event": "thing", "work": "thing", "产品": "thing",
    "项目": "thing", "事件": "thing",
}
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,3}[.)、])\s*")
# A name holds no sentence punctuation; longer than this it is a copied sentence, not a name.
_SENTENCE_MARK = re.compile(r"[，。！？；,!?;]|\.\s")
_MAX_WORDS, _MAX_HAN = 8, 12


def _plausible(name: str) -> bool:
    if not name or _SENTENCE_MARK.search(name):
        return False
    return len(name.split()) <= _MAX_WORDS and len(HAN_RE.findall(name)) <= _MAX_HAN


def parse_entities(reply: str, text: str) -> list[tuple[str, str]]:
    """(name, kind) pairs from a reply of lines 'name | type'. A name the text does not contain is dropped (a
    small or careless model invents), and so is a sentence copied whole; unknown types count as a bare name."""
    found: list[tuple[str, str]] = []
    folded = text.casefold()
    for line in reply.splitlines():
        line = _BULLET.sub("", line).strip()
        if not line:
            continue
        name, _, kind = line.partition("|")
        name = name.strip().strip("\"'“”「」")
        if not _plausible(name) or name.casefold() not in folded:
            continue
        found.append((name, _KINDS.get(kind.strip().lower(), "name")))
    return found


class LLMEntityExtractor(EntityExtractor):
    """The rule-based extractor's mentions plus those the model names in each chunk (see the module docstring).
    Questions are read by the rules alone, so a search costs no LLM call; a failed reply leaves that chunk with the
    rules' mentions (logged), never a failed ingest."""

    def __init__(self, generate_many: GenerateMany, model_name: str, *, ner: bool = False,
                 noun_phrases: bool = True, batch_size: int = 64) -> None:
        super().__init__(ner=ner, noun_phrases=noun_phrases, batch_size=batch_size)
        self.generate_many = generate_many
        self.model_name = model_name

    @property
    def version(self) -> str:
        return f"{EXTRACTOR_VERSION}+llm:{self.model_name}"

    def extract(self, texts: Sequence[str], languages: Sequence[str | None] | None = None) -> list[list[Mention]]:
        ruled = super().extract(texts, languages)
        langs = list(languages) if languages is not None else [None] * len(texts)
        prompts = [PROMPTS["zh" if is_chinese(text, lang) else "en"].format(text=text)
                   for text, lang in zip(texts, langs, strict=True)]
        replies = self.generate_many(prompts)
        failed = sum(isinstance(reply, Exception) for reply in replies)
        if failed:
            first = next(r for r in replies if isinstance(r, Exception))
            log.warning("the LLM named no entities for %d of %d chunks (%s); they keep the rules' entities",
                        failed, len(texts), first)
        return [_added(mentions, parse_entities(reply, text)) if isinstance(reply, str) else mentions
                for mentions, reply, text in zip(ruled, replies, texts, strict=True)]

    def extract_one(self, text: str) -> list[Mention]:
        return super().extract([text])[0]


def _added(mentions: list[Mention], spans: list[tuple[str, str]]) -> list[Mention]:
    """The rules' mentions, plus the model's entities they lack (a kind the model gives replaces a bare 'name'
    or 'concept')."""
    by_key = {m.key: m for m in mentions}
    for name, kind in spans:
        key = entity_key(name, kind)
        if not key:
            continue
        known = by_key.get(key)
        if known is None:
            by_key[key] = Mention(key, name, kind, KIND_WEIGHTS[kind])
        elif known.kind in ("name", "concept") and kind not in ("name", "concept"):
            by_key[key] = Mention(key, known.name, kind, max(known.weight, KIND_WEIGHTS[kind]))
    return list(by_key.values())
