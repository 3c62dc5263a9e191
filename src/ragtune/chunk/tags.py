"""Keyword tags for chunks: jieba's TF-IDF for Chinese, TF-IDF over a document's own chunks for English."""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence

from ragtune.text import HAN_RE, detect_language

__all__ = ["DEFAULT_TAG_COUNT", "ENGLISH_STOPWORDS", "extract_tags"]

DEFAULT_TAG_COUNT = 5

# Longer than a search engine's list on purpose: a tag must name a topic, so function words, auxiliaries
# and the boilerplate verbs of manuals, contracts and papers ("shall", "use", "show") are all dropped.
_STOPWORD_LIST = """
a about above after again against all almost also although always am among an and another any anyone
anything are around as at be because been before being below between both but by can cannot could did do
does doing done down during each either else etc even ever every few for from further get gets got had has
have having he her here hers herself him himself his how however i if in including into is it its itself
just least less like made make makes many may me might more most much must my myself need needs neither no
nor not now of off often on once one only onto or other others otherwise our ours ourselves out over own
per perhaps please rather same several shall she should since so some still such than that the their
theirs them themselves then there therefore these they this those though through thus to too under until
up upon us use used uses using very via was we well were what whatever when where whether which while who
whom whose why will with within without would yet you your yours yourself yourselves e g ie eg vs
new first second third based given show shows shown see seen way ways able
"""
ENGLISH_STOPWORDS: frozenset[str] = frozenset(_STOPWORD_LIST.split())

# Words of letters (with inner hyphens or apostrophes, "state-of-the-art", "don't") and alphanumeric terms
# such as "GPT-4" or "H100"; plain numbers are never tags.
_WORD = re.compile(r"[^\W\d_][\w]*(?:[-'][\w]+)*|\d+[^\W\d_][\w]*")
_jieba_lock = threading.Lock()
_jieba_ready = False


def extract_tags(texts: Sequence[str], k: int = DEFAULT_TAG_COUNT) -> list[list[str]]:
    """The top ``k`` keywords of each text, most telling first.

    Chinese texts use jieba's TF-IDF, whose IDF table ships with jieba. English has no bundled IDF table, so
    the texts themselves are the corpus: pass all the chunks of one document together and a word that
    appears in every chunk ranks below one that sets a chunk apart. Each call costs about a millisecond
    per chunk.
    """
    if k <= 0:
        return [[] for _ in texts]
    chinese = [detect_language(text) == "zh" for text in texts]
    counts = [Counter() if zh else _english_terms(text) for text, zh in zip(texts, chinese, strict=True)]
    document_frequency: Counter[str] = Counter()
    for terms in counts:
        document_frequency.update(terms.keys())
    total = len(texts)
    out: list[list[str]] = []
    for text, zh, terms in zip(texts, chinese, counts, strict=True):
        if zh:
            out.append(_chinese_tags(text, k))
            continue
        # Sublinear term frequency times smoothed IDF (scikit-learn's TfidfVectorizer formula); ties keep
        # the order of first appearance, so the result is deterministic.
        def weight(term: str, terms: Counter[str] = terms) -> float:
            return (1 + math.log(terms[term])) * (math.log((1 + total) / (1 + document_frequency[term])) + 1)

        out.append(sorted(terms, key=weight, reverse=True)[:k])
    return out


def _english_terms(text: str) -> Counter[str]:
    terms: Counter[str] = Counter()
    for match in _WORD.finditer(text):
        word = match.group()
        lower = word.lower()
        # Two-letter words are noise unless they are acronyms ("AI", "QA").
        if lower in ENGLISH_STOPWORDS or (len(word) < 3 and not word.isupper()):
            continue
        # Acronyms keep their capitals ("GPU"); other words are folded so "Keys" and "keys" count together.
        terms[word if word.isupper() and len(word) > 1 else lower] += 1
    return terms


def _chinese_tags(text: str, k: int) -> list[str]:
    import jieba.analyse

    _ensure_jieba()
    tags: list[str] = []
    # jieba scores English words and numbers mixed into Chinese text too; drop the ones that are no topic.
    for tag in jieba.analyse.extract_tags(text, topK=k * 2):
        word = str(tag).strip()
        if not word or word.lower() in ENGLISH_STOPWORDS or word.replace(".", "").isdigit():
            continue
        if len(word) < 2 and not HAN_RE.match(word):
            continue
        tags.append(word)
        if len(tags) == k:
            break
    return tags


def _ensure_jieba() -> None:
    global _jieba_ready
    if _jieba_ready:
        return
    import jieba

    with _jieba_lock:
        if not _jieba_ready:
            # jieba reports its dictionary loading on stderr; keep library output quiet.
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _jieba_ready = True
