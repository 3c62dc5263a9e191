"""The BM25 analyzer: text to index terms (NFKC, lowercase, jieba for Chinese, stopwords, Snowball stems)."""

from __future__ import annotations

import io
import logging
import re
import threading
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import Stemmer

from ragtune.files import atomic_write, atomic_write_bytes
from ragtune.paths import default_cache_dir
from ragtune.text import HAN_RUN_RE

__all__ = ["ENGLISH_STOPWORDS", "CHINESE_STOPWORDS", "tokenize"]

log = logging.getLogger(__name__)

# Lucene's EnglishAnalyzer list (also Anserini/Pyserini and bm25s "en"): short on purpose, because longer
# lists drop words that carry meaning in questions ("how", "most", "against").
# fmt: off
ENGLISH_STOPWORDS: frozenset[str] = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with",
})

# Function words and particles that carry no topic in Chinese; without them every document matches 的.
CHINESE_STOPWORDS: frozenset[str] = frozenset({
    "的", "了", "是", "在", "和", "与", "及", "或", "也", "就", "都", "而", "着", "之", "其", "这", "那", "个",
    "一个", "有", "被", "把", "对", "为", "以", "于", "上", "中", "下", "等", "并", "我", "你", "他", "她", "它",
    "我们", "你们", "他们", "她们", "它们", "吗", "呢", "吧", "啊", "呀", "么", "很", "又", "还", "从", "到", "由",
    "向", "让", "给", "但", "但是", "如果", "因为", "所以", "而且", "并且", "以及", "这个", "那个", "这些", "那些",
    "什么", "怎么", "如何", "哪", "哪些", "没有", "不是", "可以", "能", "会",
})
# fmt: on

# Han runs (ragtune.text.HAN) go to jieba; kana and Hangul are left to the word regex, which already splits
# them on spaces and punctuation.
# A word is a run of letters/digits; hyphens split ("covid-19" -> covid, 19, as Lucene's StandardTokenizer
# does, so "COVID-19" and "covid 19" match), decimals ("2.5", "1,000") and inner apostrophes stay whole.
# Measured on SciFact (train qrels, nDCG@10): splitting hyphens 0.698, keeping "covid-19" whole 0.668.
_WORD = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:'[^\W_]+)*")

_jieba_lock = threading.Lock()
_jieba_ready = False
_local = threading.local()
# Stemming dominates analysis time and vocabularies repeat, so stems are memoised (stopwords map to "");
# the cache is dropped when it grows past this many words to bound memory on unusual corpora.
_STEM_CACHE_LIMIT = 500_000


class _StemCache(dict[str, str]):
    def __missing__(self, word: str) -> str:
        if len(self) >= _STEM_CACHE_LIMIT:
            self.clear()
        stem = "" if word in ENGLISH_STOPWORDS else _stemmer().stemWord(word)
        self[word] = stem
        return stem


_stems = _StemCache()


def _stemmer() -> Stemmer.Stemmer:
    # PyStemmer objects are not thread-safe, so each thread keeps its own.
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = Stemmer.Stemmer("english")
        _local.stemmer = stemmer
    return stemmer


def _segment_chinese(run: str) -> list[str]:
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                # jieba reports its dictionary loading on stderr at DEBUG level; keep library output quiet.
                jieba.setLogLevel(logging.WARNING)
                load_jieba_dictionary(jieba)
                _jieba_ready = True
    # Search mode also emits the sub-words of long compounds (中华人民共和国 -> 中华, 人民, 共和国, ...),
    # so a query for a part still finds the whole.
    return jieba.lcut_for_search(run)


def jieba_dictionary_cache(jieba: Any) -> Path:
    """Where ragtune keeps its copy of jieba's default prefix dictionary (one per jieba version and dict.txt)."""
    source = Path(jieba.__file__).parent / "dict.txt"
    try:
        stat = source.stat()
        stamp = f"{stat.st_size}-{stat.st_mtime_ns}"
    except OSError:
        stamp = "none"
    return default_cache_dir() / f"jieba-{jieba.__version__}-{stamp}"


def load_jieba_dictionary(jieba: Any) -> None:
    """Load jieba's prefix dictionary (half a million words) the fast way.

    jieba reads it from a marshal cache, which takes 1.5 s on a 2-core CPU; the same words as one text file and their
    counts as one numpy array take 0.3 s. The copy is made in ragtune's cache directory the first time, from what
    jieba loaded itself, and only for jieba's default dictionary; a missing or damaged copy falls back to jieba."""
    tokenizer = jieba.dt
    if tokenizer.initialized or tokenizer.dictionary is not None:  # None: jieba's default dictionary
        tokenizer.check_initialized()
        return
    directory = jieba_dictionary_cache(jieba)
    words_file, counts_file = directory / "words.txt", directory / "counts.npy"
    try:
        words = words_file.read_text(encoding="utf-8").split("\n")
        counts = np.load(counts_file, allow_pickle=False)  # the words' counts, then their total
        if counts.ndim == 1 and len(counts) == len(words) + 1:
            with tokenizer.lock:
                if not tokenizer.initialized:
                    tokenizer.FREQ = dict(zip(words, counts[:-1].tolist(), strict=True))
                    tokenizer.total = int(counts[-1])
                    tokenizer.initialized = True
            return
    except (OSError, ValueError, EOFError):  # EOFError: an empty counts file
        pass
    tokenizer.initialize()
    try:
        words = list(tokenizer.FREQ)
        if any("\n" in w for w in words):
            return
        counts = np.fromiter((*tokenizer.FREQ.values(), tokenizer.total), dtype=np.int64, count=len(words) + 1)
        # Each file appears whole (a reader of a half-written pair sees lengths that differ and uses jieba's).
        buffer = io.BytesIO()
        np.save(buffer, counts, allow_pickle=False)
        atomic_write_bytes(counts_file, buffer.getvalue())
        atomic_write(words_file, "\n".join(words))
    except OSError as exc:
        log.debug("jieba's dictionary could not be cached in %s: %s", directory, exc)


def _words(text: str) -> list[str]:
    return [stem for stem in map(_stems.__getitem__, _WORD.findall(text)) if stem]


def tokenize(text: str) -> list[str]:
    """Turn ``text`` into BM25 index terms; documents and queries must go through the same function."""
    text = unicodedata.normalize("NFKC", text).lower()
    if text.isascii() or not HAN_RUN_RE.search(text):
        return _words(text)
    tokens: list[str] = []
    pos = 0
    for match in HAN_RUN_RE.finditer(text):
        tokens.extend(_words(text[pos : match.start()]))
        tokens.extend(t for t in _segment_chinese(match.group()) if t not in CHINESE_STOPWORDS)
        pos = match.end()
    tokens.extend(_words(text[pos:]))
    return tokens
