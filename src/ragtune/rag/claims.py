"""Claim-level support: split an answer into claims and judge each against the sources (one judge for answers
and for evaluation's faithfulness, so the two never disagree)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol

from ragtune.rag.quantities import Quantity, compatible, quantities, year_of
from ragtune.store.text import tokenize
from ragtune.text import HAN_RE, detect_language, split_sentences

__all__ = [
    "ClaimCheck", "ClaimJudge", "LexicalJudge", "codes_in", "default_judge", "labelled_sentences", "names_in",
    "split_claims", "strip_markers", "terms_of", "Vocabulary",
]

# [1]  [1, 3]  [1-3]  [^2]  【1】  ［1］  [Source 2]  [来源 1]
CITATION_RE = re.compile(
    r"[\[【［]\^?\s*(?:(?:source|src|来源|资料)\s*)?(\d+(?:\s*(?:[-–,，、]|and|&)\s*\d+)*)\s*[\]】］]", re.IGNORECASE
)
# A marker cut off by the end of generation: "... [6" or "... [".
_DANGLING_MARKER = re.compile(r"\s*[\[【［]\s*\d*\s*$")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.!?,;:。！？，；：])")

# Lines a model copies from its prompt instead of answering: the question, the source list, role labels.
_ECHO_LINE = re.compile(
    r"^\s*(?:#+\s*)?(?:question|q|sources?|context|instructions?|user|system|问题|问|资料|来源|上下文|用户|系统)\s*[:：]",
    re.IGNORECASE,
)
# A line that starts with a marker lists a source ("[1] Escalations go to …"); answers cite at sentence ends.
_LISTED_SOURCE = re.compile(r"^\s*[\[【［]\d+[\]】］]\s*\S")
# Labels a model puts before its answer; the answer after them stays.
_ANSWER_LABEL = re.compile(
    r"^\s*(?:(?:answer|a|assistant|response|答案|答|回答)\s*[:：]|(?:the\s+)?answer(?:\s+to\s+(?:this|the|your)"
    r"\s+question)?\s+is\s*:|答案是\s*[:：]?)\s*", re.IGNORECASE)
# A question echoed at the start of a line ("Question: … ? The answer …"): up to its question mark.
_ECHOED_QUESTION = re.compile(r"^\s*(?:question|q|问题|问)\s*[:：][^?？\n]*[?？]?\s*", re.IGNORECASE)
# Sentences of ragtune's own instructions (and common paraphrases) that small models repeat.
_INSTRUCTION = re.compile(
    r"using only the sources|cite the source|source number like|if the sources do not answer|answer the question"
    r"|based on the (?:sources|context)|只根据资料|标注资料编号|请回答|资料中没有答案|根据资料回答",
    re.IGNORECASE,
)


class Vocabulary:
    """The terms of a fixed word list (``terms_of`` by default), its Chinese words analysed only when first needed.

    Analysing a Chinese word needs jieba's dictionary, whose loading takes 1.6 s on a 2-core CPU: a command that
    never meets Chinese text should not pay for it because ragtune's word lists hold Chinese words too. A term
    without Han characters comes only from the list's other words, so it is looked up among theirs (analysed at
    once); a Chinese term, or a set holding one, makes the whole list analysed. ``term in v``, ``terms - v`` and
    ``terms & v`` are as with the list's terms; ``a | b`` is the list of both."""

    def __init__(self, words: str, analyse: Callable[[str], frozenset[str]] | None = None) -> None:
        self.words = words
        self._analyse = analyse or terms_of
        self.latin = self._analyse(" ".join(w for w in words.split() if w.isascii()))

    @functools.cached_property
    def terms(self) -> frozenset[str]:
        return self._analyse(self.words)

    def within(self, terms: AbstractSet[str]) -> frozenset[str]:
        """The list's terms that ``terms`` could share: the Latin ones, unless ``terms`` hold a Chinese term."""
        return self.latin if "".join(terms).isascii() else self.terms

    def __contains__(self, term: object) -> bool:
        return term in (self.latin if isinstance(term, str) and term.isascii() else self.terms)

    def __rsub__(self, other: AbstractSet[str]) -> frozenset[str]:
        return frozenset(other) - self.within(other)

    def __rand__(self, other: AbstractSet[str]) -> frozenset[str]:
        return frozenset(other) & self.within(other)

    def __or__(self, other: Vocabulary) -> Vocabulary:
        return Vocabulary(f"{self.words} {other.words}", self._analyse)


def _analysed(words: str) -> frozenset[str]:
    return frozenset(tokenize(words))


# Words about the answer itself ("according to the source", "the document states") carry no claim.
_META = Vocabulary(
    "according source sources document documents context passage states stated mentions mentioned says answer "
    "question information provided given text based note said say says told tell tells wrote write writes "
    "replied reply replies explained noted think thinks thought asked asks "
    "根据 资料 文档 来源 提到 表示 答案 问题 信息 内容 显示 指出 说",
    _analysed,
)
# Function words the BM25 analyzer keeps but that state nothing a source must back ("has", "must", "为").
_FUNCTION = frozenset(tokenize(
    "has have had having do does did can could should would may might shall must will also only just very its his "
    "her him our your we you he she i me my us them those what which who whom whose when where how why than from up "
    "about each any some other so too here been being am were was are get gets got all please need needs "
    "related regarding concerning "  # "garden-related activity": an activity about the garden
)) | frozenset({"为", "需", "须", "请", "将", "已", "可", "应", "则", "即", "该", "此", "均", "需要", "必须", "应当",
                "应该"})
_NEGATION = re.compile(
    r"\b(?:not|no|never|none|cannot|can't|don't|doesn't|isn't|aren't|won't|without|neither|nor)\b"
    r"|不|没有|无需|无|未|禁止|不得|不能|不可|非",
    re.IGNORECASE,
)
# Clause boundaries inside a sentence: a number belongs to the clause it stands in.
_CLAUSE_EN = re.compile(r",\s+|;\s+|\s+(?:and|or|but|while|whereas|plus)\s+|\s+[–—]\s+|\s*\(|\)\s*", re.IGNORECASE)
_CLAUSE_ZH = re.compile(r"[，、；;（）()]|以及|而且|但是|而")
_HEADING = re.compile(r"^\s*#{1,6}\s+")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]+\|[\s:|-]*$")
# A capitalised word that is not first in its sentence, an acronym, or a word with digits: a name.
_NAME_EN = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-Z][\w'-]*[A-Za-z0-9]|[A-Z]{2,}|[A-Za-z]+-?\d+[\w-]*)")
_QUOTED = re.compile(r"[“「『\"]([^”」』\"]{1,20})[”」』\"]")
# A code that mixes letters and digits, letters first ('Family123', 'INC-2041', 'X200'): compared as written, since
# the terms leave digits to the number checks. A number with a suffix ('18th', '5km') is a quantity, not a code.
# ASCII on both sides: in Chinese a code sits between characters ("零件FAC-31由…生产"), which \w would take in.
_CODE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z][A-Za-z-]*\d[A-Za-z0-9_-]*(?<![-_])")
# A channel, handle or tag ('#sec-oncall', '@priya.nair'): an identifier, as exact as a name, whatever its case.
_HANDLE = re.compile(r"(?<![\w#@])[#@][A-Za-z][\w.-]*[A-Za-z0-9]")


def strip_markers(text: str) -> str:
    """``text`` without citation markers (and a marker cut off at its end), spaces before punctuation closed."""
    text = _DANGLING_MARKER.sub("", CITATION_RE.sub("", text))
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split())).strip()


def split_claims(text: str, language: str | None = None) -> list[str]:
    """The claims of an answer or reference: its sentences and ';'-joined clauses, one per line of a list,
    without citation markers, answer labels ('A:', 'Answer:') and what was echoed from a prompt ('Question: …',
    source listings, instruction text). Repeats and sentences without content are dropped."""
    claims: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        line = _ECHOED_QUESTION.sub("", line)
        if _ECHO_LINE.match(line) or _LISTED_SOURCE.match(line):
            continue
        line = _ANSWER_LABEL.sub("", line)
        for start, end in split_sentences(line, semicolons=True):
            sentence = _ANSWER_LABEL.sub("", line[start:end])
            if _ECHO_LINE.match(sentence) or _INSTRUCTION.search(sentence):
                continue
            claim = strip_markers(sentence)
            if claim.endswith((":", "：")) or not _content(claim):
                continue  # a lead-in ("The answer is:") or a bare marker claims nothing
            key = re.sub(r"\W+", "", claim.lower())
            if key in seen:
                continue
            seen.add(key)
            claims.append(claim)
    return claims


def _content(text: str) -> bool:
    return bool(set(tokenize(text)) - _META) or bool(quantities(text))


@dataclass
class ClaimCheck:
    """The verdict on one claim: supported or not, how strongly (0..1), by which context, and why not."""

    claim: str
    supported: bool
    score: float
    source: int | None  # 0-based index of the best supporting context
    reason: str = ""  # '' when supported, else why (e.g. "180 EUR is stated for Berlin, not Paris")
    evidence: str = ""  # the passage of the best context that the verdict rests on


class ClaimJudge(Protocol):
    """Judges whether each claim is supported by the contexts."""

    def check(
        self, claims: Sequence[str], contexts: Sequence[str], *, question: str | None = None,
        language: str | None = None,
    ) -> list[ClaimCheck]: ...


# ---------------------------------------------------------------------------------------------- text analysis


@dataclass
class _Frame:
    """What a number is said about: the terms bound to it (its clause, the sentence's subject and number-free
    clauses, the headings and lead-ins above), what sets its clause apart, and what sets apart each sibling that
    states another number (other clauses of the sentence, other rows of the table)."""

    quantity: Quantity
    bound: frozenset[str]
    sentence: frozenset[str]  # every term of its sentence, with the headings and lead-ins above
    distinct: frozenset[str]  # what sets its clause apart from the siblings ('Berlin' in a row of cities)
    rivals: tuple[frozenset[str], ...]  # the siblings' distinct terms
    own_text: str
    # A year the sentence does not state but stands under: the last sentence above it, under the same headings,
    # that states one ("In 2025 the company opened two plants. Revenue grew to 5.1 million EUR.").
    inherited: bool = False


@dataclass
class _Unit:
    """A sentence (or table row) of a context, with its terms, its headings and its numbers' frames."""

    context: int
    text: str
    terms: frozenset[str]
    headings: frozenset[str]
    frames: list[_Frame] = field(default_factory=list)
    negated: bool = False
    speaker: frozenset[str] = frozenset()  # the terms of its chat line's speaker label


@dataclass
class _Analysis:
    units: list[_Unit]
    terms: frozenset[str]
    df: dict[str, int]
    #: The units' text, lower-cased: where a claim's codes must stand.
    text: str = ""


# Words policy text and answers use for one another ("costs" / "price", "window" / "period", "上限" / "最多"):
# each group is matched as its first word.
_SYNONYM_GROUPS = (
    "cost price fee charge", "limit maximum max cap ceiling", "window period", "lead led head",
    "start begin began begun open",
    "end finish close", "staff employee worker personnel", "require mandatory obligatory", "allow permit",
    "approve authorise authorize", "large big", "yearly annual annually", "every each", "phone mobile",
    # Not "organisation": it stems as "organise" does ('organiz'), and "Thrall plans to organise a planting day"
    # is not about a company.
    "company firm employer", "上限 最多 最高", "费用 价格 收费 价钱", "员工 职工 雇员",
    "审批 批准 核准", "提交 递交", "预订 预定 订 订购", "每天 每日", "每月 每个月",
    # Irregular past forms that stem apart from their verb ("Ravi sent the reminder" = "I will send the reminder"
    # in what it is about; the tense is a plan's or a report's, which the timeline and answers tell apart).
    "send sent", "meet met", "buy bought", "pay paid", "make made", "give gave given", "take took taken",
    "write wrote written", "bring brought", "find found", "keep kept", "hold held", "choose chose chosen",
    "speak spoke spoken", "eat ate eaten", "drink drank drunk", "go went gone", "come came", "win won",
    "lose lost", "sell sold", "spend spent", "build built", "lend lent", "teach taught", "catch caught",
    "forget forgot forgotten", "drive drove driven", "fly flew flown",
)


def _synonym_table(groups: Iterable[str]) -> dict[str, str]:
    return {t: tokenize(group.split()[0])[0] for group in groups for word in group.split() for t in tokenize(word)}


# The Latin groups at once; all of them (analysing the Chinese ones needs jieba) for a text with Chinese terms.
_LATIN_SYNONYMS = _synonym_table(g for g in _SYNONYM_GROUPS if g.isascii())


@functools.cache
def _synonyms() -> dict[str, str]:
    return _synonym_table(_SYNONYM_GROUPS)


def terms_of(text: str) -> frozenset[str]:
    """The terms the judge compares (BM25 analysis, synonyms merged, without numbers, function and meta words)."""
    return _terms(text) - _META - _FUNCTION


def codes_in(text: str) -> frozenset[str]:
    """The codes and identifiers in a text ('FAC-22', 'Family123'), lower-cased: words with a digit, which the
    terms leave out."""
    return frozenset(c.lower() for c in _CODE.findall(text))


def names_in(text: str) -> frozenset[str]:
    """Terms of the names in a text: capitalised words inside a sentence, acronyms, codes, quoted words."""
    return _names(text)


def _terms(text: str) -> frozenset[str]:
    # Numbers are compared as quantities ('二十天' = '20 days'), not as words.
    terms = _cached_terms(text)
    synonyms = _LATIN_SYNONYMS if "".join(terms).isascii() else _synonyms()
    return frozenset(synonyms.get(t, t) for t in terms
                     if not any(ch.isdigit() for ch in t) and not _numeral(t))


# Names written together in chat logs and code ("AdamSmith", "LiHua") are read as their parts.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


@functools.lru_cache(maxsize=8192)
def _cached_terms(text: str) -> tuple[str, ...]:
    return tuple(tokenize(_CAMEL.sub(" ", text)))


_ZH_NUMERAL = re.compile("^[零〇一二三四五六七八九两十百千万亿半]+[天日年月周次人名个位元倍项条]?$")
_EN_NUMERAL = frozenset(tokenize("one two three four five six seven eight nine ten eleven twelve fifteen twenty "
                                 "thirty forty fifty sixty hundred thousand"))


def _numeral(term: str) -> bool:
    return term in _EN_NUMERAL or bool(_ZH_NUMERAL.match(term))


def _clauses(sentence: str) -> list[tuple[int, int]]:
    pattern = _CLAUSE_ZH if HAN_RE.search(sentence) else _CLAUSE_EN
    spans, pos = [], 0
    for m in pattern.finditer(sentence):
        if m.start() > pos:
            spans.append((pos, m.start()))
        pos = m.end()
    if pos < len(sentence):
        spans.append((pos, len(sentence)))
    return spans or [(0, len(sentence))]


def _frames(text: str, context_terms: frozenset[str]) -> list[_Frame]:
    """The frame of every number in a sentence (``context_terms``: headings and lead-ins that apply to it)."""
    found = quantities(text)
    if not found:
        return []
    units = frozenset().union(*(_terms(text[q.start:q.end]) for q in found))
    numbered: list[tuple[int, int, list[Quantity]]] = []
    free: set[str] = set()
    for s, e in _clauses(text):
        inside = [q for q in found if s <= q.start < e]
        if inside:
            numbered.append((s, e, inside))
        else:
            free |= _terms(text[s:e])
    # The subject of the first numbered clause is shared by every clause after it ("Hotel costs are reimbursed
    # up to 180 EUR in Europe and 250 USD in North America"); the rest of that clause is said about its number.
    s0, _, inside0 = numbered[0]
    before = text[s0 : inside0[0].start]
    subject_end = _subject_end(before)
    head = _terms(before[:subject_end] if subject_end is not None else before)
    clause_terms = [_terms(text[s:e]) - units for s, e, _ in numbered]
    distinct = [t - head - frozenset().union(*(o for j, o in enumerate(clause_terms) if j != i))
                for i, t in enumerate(clause_terms)]
    sentence = _terms(text) | context_terms
    frames = []
    for i, (s, e, inside) in enumerate(numbered):
        bound = clause_terms[i] | head | frozenset(free) | context_terms
        rivals = tuple(d for j, d in enumerate(distinct) if j != i and d)
        for q in inside:
            frames.append(_Frame(q, bound, sentence, distinct[i], rivals, text[s:e].strip()))
    return frames


# "AdamSmith: Hi Li Hua! …", "**Note:** …": a short label that says who speaks or what a line is about.
# A full-width colon is followed by no space in Chinese ("李华：你好！").
_LINE_LABEL = re.compile(r"^\s*\**([A-Z\u4e00-\u9fff][\w .'’-]{0,40}?)\**\s*(?::\s+|：\s*)(?=\S)")
# A label and nothing else: "Aisling:" (the rest of a line "LiHua: Aisling:").
_LABEL_ONLY = re.compile(r"\**([A-Z\u4e00-\u9fff][\w .'’-]{0,40}?)\**\s*[:：]\s*$")
# What follows a label of the log's header, not a speaker: no word, only a date, time or number.
_FIELD_VALUE = re.compile(r"(?:[\W\d_年月日时分秒点号]|[AaPp]\.?[Mm]\b\.?)*")


def without_label(line: str) -> str:
    """A chat line without its speaker's label ('Ravi: I sent it.' → 'I sent it.'); other text as it is."""
    return _LINE_LABEL.sub("", line, 1)


def labelled_sentences(text: str, *, semicolons: bool = False) -> list[tuple[str, str]]:
    """The sentences of a text, each with the label of its line ('' when none). In a chat log or transcript
    (lines that open with a speaker's name: 'AdamSmith: Hi! …') every line is read on its own, and each of its
    sentences belongs to its speaker. Leading labels followed by no word ('Time: 20260105_14:00') are fields of the
    log's header, not speakers; a line without a label after someone has spoken is theirs too."""
    lines = text.splitlines()
    labelled = [_LINE_LABEL.match(line) for line in lines]
    for n, label in enumerate(labelled):
        # The log's header: labelled lines that say no word, before anyone speaks ("Time: 20260105_14:00").
        if label is None or not _FIELD_VALUE.fullmatch(lines[n][label.end():]):
            break
        labelled[n] = None
    if sum(m is not None for m in labelled) < 2:
        return [(text[s:e], "") for s, e in split_sentences(text, semicolons=semicolons)]
    found: list[tuple[str, str]] = []
    speaker = ""
    for line, label in zip(lines, labelled, strict=True):
        # A line without a label goes on with the message above it (a message of several paragraphs).
        speaker = label.group(1).strip() if label else speaker
        inner = _LABEL_ONLY.match(line[label.end():]) if label else None
        if inner:
            # "LiHua: Aisling:" and the message on the lines below: Aisling says it (a log's broken line).
            speaker = inner.group(1).strip()
            continue
        found += [(line[s:e], speaker) for s, e in split_sentences(line, semicolons=semicolons)]
    return found


def _sentences(text: str) -> list[tuple[str, frozenset[str]]]:
    """The sentences of a context, each with the terms of its line's label."""
    return [(sentence, _terms(label) if label else frozenset())
            for sentence, label in labelled_sentences(text, semicolons=True)]


@functools.lru_cache(maxsize=2048)
def _analyse_context(index: int, text: str) -> tuple[_Unit, ...]:
    units: list[_Unit] = []
    headings: dict[int, frozenset[str]] = {}
    table_header: frozenset[str] = frozenset()
    table_rows: list[_Unit] = []
    lead_in: frozenset[str] = frozenset()
    section_free: frozenset[str] = frozenset()
    dated: tuple[list[Quantity], str] = ([], "")  # the years of the last sentence that stated one, and its text

    def frame_year(unit: _Unit) -> None:
        # A unit that states no year of its own stands under the last year stated above it.
        if dated[0] and not any(year_of(f.quantity) for f in unit.frames):
            everything = unit.terms | unit.headings
            unit.frames = unit.frames + [_Frame(q, everything, everything, frozenset(), (), dated[1], inherited=True)
                                         for q in dated[0]]

    def close_table() -> None:
        # Each row of a table is said about its own key: other rows' cells are foreign to its numbers.
        nonlocal table_rows
        distinct = [row.terms - row.headings - frozenset().union(*(r.terms for r in table_rows if r is not row))
                    for row in table_rows]
        for i, row in enumerate(table_rows):
            rivals = tuple(d for j, d in enumerate(distinct) if j != i and d)
            row.frames = [f if f.inherited else _Frame(f.quantity, f.bound, f.sentence, distinct[i], rivals, f.own_text)
                          for f in row.frames]
        table_rows = []

    for sentence, label in _sentences(text):
        heading = _HEADING.match(sentence)
        if heading:
            close_table()
            level = len(sentence.lstrip()) - len(sentence.lstrip().lstrip("#"))
            headings = {lvl: terms for lvl, terms in headings.items() if lvl < level}
            headings[level] = _terms(sentence)
            lead_in = frozenset()
            section_free = frozenset()
            dated = ([], "")
            continue
        # Headings above, the number-free sentences of the section so far, and the speaker of a chat line frame
        # what follows them.
        shared = frozenset().union(*headings.values(), section_free, label)
        # In a conversation what was said before frames the numbers of a line (the "5:30 PM" a reply agrees to), but
        # is not said in it: a line's words are its own and its speaker's (two adjacent lines may still back a claim
        # together, see ``_joins``).
        said_under = frozenset().union(*headings.values(), label) if label else shared
        if _TABLE_ROW.match(sentence) or sentence.lstrip().startswith("|"):
            if _TABLE_RULE.match(sentence):
                continue
            if not table_rows and not table_header:
                table_header = _terms(sentence)
                if not quantities(sentence):
                    continue
            context_terms = shared | table_header | lead_in
            row_text = sentence
            unit = _Unit(index, row_text, _terms(row_text), context_terms, _frames(row_text, context_terms),
                         bool(_NEGATION.search(row_text)))
            frame_year(unit)
            table_rows.append(unit)
            units.append(unit)
            continue
        close_table()
        table_header = frozenset()
        context_terms = shared | lead_in
        unit = _Unit(index, sentence, _terms(sentence), said_under | lead_in, _frames(sentence, context_terms),
                     bool(_NEGATION.search(sentence)), label)
        units.append(unit)
        if not unit.frames:
            section_free = section_free | unit.terms
        years = [f.quantity for f in unit.frames if year_of(f.quantity)]
        if years:
            dated = (years, sentence)
        else:
            frame_year(unit)
        # A sentence that ends in ':' introduces the list or lines after it.
        lead_in = _terms(sentence) if sentence.rstrip().endswith((":", "：")) else frozenset()
    close_table()
    return tuple(units)


def _analyse(contexts: Sequence[str]) -> _Analysis:
    units = [u for i, c in enumerate(contexts) for u in _analyse_context(i, c)]
    df: dict[str, int] = {}
    for u in units:
        for t in u.terms | u.headings:
            df[t] = df.get(t, 0) + 1
    return _Analysis(units, frozenset(df), df, "\n".join(u.text for u in units).lower())


# ---------------------------------------------------------------------------------------------- the judge


@dataclass
class _Claim:
    text: str
    terms: frozenset[str]
    weights: dict[str, float]
    names: dict[str, str]  # term -> the name it comes from
    surface: dict[str, str]  # term -> a word of the claim it comes from
    frames: list[_Frame]
    negated: bool
    subject: frozenset[str]  # terms of what the claim is about, where the sources know them


class LexicalJudge:
    """The default claim judge: no model, deterministic, milliseconds per claim, English and Chinese.

    A claim is supported when one passage (a sentence, or two adjacent ones, with the headings above them)
    holds most of its weighted terms (rarer terms weigh more; words the claim only repeats from the question
    weigh half), every name in it, and — for every number, date or unit it states — a passage that states
    the same amount about the same subject: in the same clause or table row as the claim's other terms, not
    in a sibling clause or row said about something else, and not where another amount fits the claim better.
    """

    def __init__(self, *, threshold: float = 0.6, number_threshold: float = 0.65, margin: float = 0.2) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1].")
        if not 0 < number_threshold <= 1:
            raise ValueError("number_threshold must be in (0, 1].")
        self.threshold = threshold
        self.number_threshold = number_threshold
        self.margin = margin

    def check(
        self, claims: Sequence[str], contexts: Sequence[str], *, question: str | None = None,
        language: str | None = None,
    ) -> list[ClaimCheck]:
        analysis = _analyse(list(contexts))
        asked = _terms(question) if question else frozenset()
        return [self._check(claim, analysis, asked) for claim in claims]

    # --------------------------------------------------------------------------------------------------

    def _claim(self, text: str, analysis: _Analysis, asked: frozenset[str]) -> _Claim:
        # Units are compared with their numbers ('20 days' = '二十天'); as words they would only inflate a match.
        units = frozenset().union(*(_terms(text[q.start:q.end]) for q in quantities(text)))
        terms = _terms(text) - _META - _FUNCTION - units
        n = max(len(analysis.units), 1)
        weights = {}
        for t in terms:
            df = analysis.df.get(t, 0)
            weight = 1.0 + math.log((n + 1) / (df + 1))
            # Words the claim repeats from the question say little; words found nowhere say something unchecked.
            weights[t] = weight * (0.5 if t in asked else 2.0 if not df else 1.0)
        subject = _subject(text) & frozenset(analysis.df)
        # The subject may hold a unit the terms leave out ('EUR' in "the EUR limit is 30"): it needs a word too.
        surface = _surface(text, terms | subject)
        names = {t: s for t, s in surface.items() if t in terms and t in _names(text)}
        return _Claim(text, terms, weights, names, surface, _frames(text, frozenset()),
                      bool(_NEGATION.search(text)), subject)

    def _check(self, text: str, analysis: _Analysis, asked: frozenset[str]) -> ClaimCheck:
        claim = self._claim(strip_markers(text), analysis, asked)
        if not analysis.units:
            return ClaimCheck(text, False, 0.0, None, "there are no sources to check it against")
        if not claim.terms and not claim.frames:
            return ClaimCheck(text, True, 1.0, None, "")
        # 1. The passage that holds most of the claim.
        coverage, best_unit, window_terms, evidence = self._best_window(claim, analysis)
        score, reasons = coverage, []
        source: int | None = best_unit.context
        # 2. Names must be in that passage (or in what a number of the claim is bound to).
        bound_terms = set(window_terms)
        # 3. Every number must be stated about the same subject.
        number_scores = []
        for frame in claim.frames:
            fit, context, reason, frame_bound, stated_in = self._number(frame, claim, analysis)
            number_scores.append(fit)
            if reason:
                reasons.append(reason)
            else:
                # The passage that states the claim's number is the one that supports it.
                bound_terms |= frame_bound
                source, evidence = context, stated_in
        unknown_codes = [c for c in dict.fromkeys(_CODE.findall(claim.text))
                         if not re.search(rf"(?<![A-Za-z0-9_-]){re.escape(c.lower())}(?![A-Za-z0-9_-])", analysis.text)]
        if unknown_codes:
            reasons.append(f"{_quote(unknown_codes)} {'is' if len(unknown_codes) == 1 else 'are'} not in the sources")
        missing_names = [claim.names[t] for t in claim.names if t not in bound_terms]
        if missing_names:
            known = [name for t, name in claim.names.items() if t not in bound_terms and t in analysis.terms]
            unknown = [name for name in missing_names if name not in known]
            if unknown:
                reasons.append(f"{_quote(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the sources")
            if known:
                reasons.append(f"the sources do not state this about {_quote(known)}")
        if number_scores:
            score = 0.5 * coverage + 0.5 * min(number_scores)
        if claim.negated != best_unit.negated and coverage < 0.999 and not claim.frames:
            score *= 0.8  # a lexical judge cannot read negation well; it only lowers confidence
        if not reasons and not claim.frames and coverage >= self.threshold \
                and (about := self._subject_missing(claim, window_terms)):
            reasons.append(about)  # the rest of it is said, of someone or something else
        if coverage < self.threshold and not reasons:
            missing = [claim.surface[t] for t in sorted(claim.terms - window_terms, key=lambda t: -claim.weights[t])]
            reasons.append(f"the sources do not say this (missing: {', '.join(missing[:4])})" if missing
                           else "the sources do not say this")
        if reasons:
            return ClaimCheck(text, False, round(min(score, self.threshold) * 0.5, 4), source, "; ".join(reasons),
                              evidence)
        return ClaimCheck(text, True, round(max(score, self.threshold), 4), source, "", evidence)

    def _best_window(self, claim: _Claim, analysis: _Analysis) -> tuple[float, _Unit, frozenset[str], str]:
        """The passage holding most of the claim: (coverage, its last sentence, its terms, its text)."""
        total = sum(claim.weights.values()) or 1.0
        best: tuple[float, _Unit, frozenset[str], str] = (-1.0, analysis.units[0], frozenset(), "")
        previous: _Unit | None = None
        for unit in analysis.units:
            windows = [(unit.terms | unit.headings, unit.text)]
            if previous is not None and _joins(previous, unit):
                # A claim may join two adjacent sentences ("X is the director. She approves refunds.").
                windows.append((previous.terms | unit.terms | unit.headings, f"{previous.text} {unit.text}"))
            for i, (terms, text) in enumerate(windows):
                covered = sum(w for t, w in claim.weights.items() if t in terms) / total
                covered *= 0.95 if i else 1.0
                if covered > best[0]:
                    best = (covered, unit, terms, text)
            previous = unit
        coverage = best[0] if claim.weights else 1.0
        return coverage, best[1], best[2], best[3]

    def _subject_missing(self, claim: _Claim, window_terms: frozenset[str]) -> str:
        """The claim's subject where the passage that supports the rest of it states it of someone or something
        else: "The vendor prepares the slides" against "Mei: Thanks, I will prepare the slides." ('' when the
        passage holds a word of the subject, or the subject is in no source at all: a paraphrase, which the
        coverage judges)."""
        actor = _agent(claim.text) & frozenset(claim.weights) or claim.subject
        if not actor or actor & window_terms:
            return ""
        subject = _surfaces(claim.text, _by_weight(actor, claim.weights))
        return f"the sources do not state this about {_quote(subject)}"

    def _number(self, frame: _Frame, claim: _Claim, analysis: _Analysis
                ) -> tuple[float, int | None, str, frozenset[str], str]:
        """How well the best statement of this number fits the claim: (fit, context, reason, the terms bound to
        it there, the sentence that states it)."""
        wanted = {t: w for t, w in claim.weights.items() if t in frame.bound} or claim.weights
        total = sum(wanted.values()) or 1.0
        stated = f"{frame.quantity.surface.strip()}"

        def fit(f: _Frame) -> float:
            return sum(w for t, w in wanted.items() if t in f.bound) / total if wanted else 1.0

        # A year a sentence stands under binds only a year the claim states, never another of its numbers.
        year = year_of(frame.quantity) is not None
        same = [(u, f) for u in analysis.units for f in u.frames
                if compatible(f.quantity, frame.quantity) and (year or not f.inherited)]
        if not same:
            return 0.0, None, f"{stated} is not stated in the sources", frozenset(), ""
        candidates = []
        misbound: list[tuple[_Frame, list[str]]] = []
        for unit, f in same:
            # Misbound: the claim holds what sets a sibling amount apart better than what sets this one apart
            # ("the hotel limit in Paris is 180 EUR" where the row of 180 EUR is Berlin's).
            own = _share(f.distinct, claim.terms, claim.weights)
            sibling = max(f.rivals, key=lambda r: _share(r, claim.terms, claim.weights), default=frozenset())
            if sibling and _share(sibling, claim.terms, claim.weights) >= max(0.5, own + 0.01):
                misbound.append((f, [t for t in sibling if t in claim.terms]))
            else:
                candidates.append((fit(f), unit, f))
        # The number must be stated about the claim's subject ("Passwords must be rotated every 90 days" is not
        # what "API keys must be rotated every 90 days" says).
        subject_weight = sum(claim.weights.get(t, 0.0) for t in claim.subject)
        off_subject = []
        if subject_weight:
            for c in candidates:
                share = sum(claim.weights.get(t, 0.0) for t in claim.subject if t in c[2].sentence) / subject_weight
                if share < 0.5:
                    off_subject.append(c)
            candidates = [c for c in candidates if c not in off_subject]
        rivals = [(fit(f), f) for u in analysis.units for f in u.frames
                  if f.quantity.value != frame.quantity.value and _same_kind(f.quantity, frame.quantity)
                  and (year or not f.inherited)]
        rival_fit, rival = max(rivals, key=lambda r: r[0], default=(0.0, None))
        if rival is not None and rival_fit >= self.number_threshold and (
                not candidates or rival_fit >= max(c[0] for c in candidates) + self.margin):
            # Another amount of the same kind is said about this claim's subject: the claim took the wrong one.
            subject = [claim.surface[t] for t in rival.distinct if t in claim.terms] or \
                [claim.surface[t] for t in _by_weight(claim.subject, claim.weights)]
            return 0.0, None, (f"the sources state {rival.quantity.surface.strip()} for {_quote(subject) or 'this'}, "
                               f"not {stated}"), frozenset(), ""
        if not candidates and off_subject:
            f = max(off_subject, key=lambda c: c[0])[2]
            missing = [claim.surface[t] for t in _by_weight(claim.subject, claim.weights) if t not in f.sentence]
            return 0.0, None, f"{stated} is stated for {_about(f, wanted)}, not {_quote(missing)}", frozenset(), ""
        if not candidates:
            f, wrong = max(misbound, key=lambda m: fit(m[0]))
            return 0.0, None, (f"{stated} is stated for {_about(f, wanted)}, "
                               f"not {_quote([claim.surface[t] for t in wrong])}"), frozenset(), ""
        best_fit, unit, best = max(candidates, key=lambda c: c[0])
        if best_fit < self.number_threshold:
            return best_fit, unit.context, (f"{stated} is stated in another context "
                                            f"({_shorten(best.own_text)!r})"), frozenset(), ""
        return best_fit, unit.context, "", best.bound, unit.text


# Where an English subject ends: auxiliaries, modals, copulas and common verbs of policy text.
_SUBJECT_END_EN = re.compile(
    r"\b(?:is|are|was|were|be|been|must|can|could|should|shall|will|would|may|might|need|needs|has|have|had|"
    r"get|gets|receive|receives|require|requires|allow|allows|take|takes|starts|opens|closes|pays|approves|"
    r"do|does|did|sent|made|gave|took|met|bought|told|said|paid|wrote|brought|found|kept|held|chose|spoke)\b"
    # A verb in -s or -ed before its object: "The vendor prepares the slides", "Ravi booked a table".
    r"|\b[a-z]{3,}(?:s|ed)\b(?=\s+(?:the|a|an|his|her|their|its|to|that|this|these|our|my|your)\b)", re.IGNORECASE)
# Where a Chinese topic ends: verbs, modals, adverbs and prepositions that follow it, as whole words (the 应 of
# 供应商 is no modal), or a word of time or frequency ("王梅明天给全组发提醒", "员工每月可以申请…").
_SUBJECT_END_ZH = frozenset({
    "是", "有", "需要", "需", "必须", "可以", "可", "应当", "应该", "应", "会", "将", "在",
    "为", "超过", "享有", "获得", "不", "没有", "最多", "至少", "由", "向", "按", "于", "要",
    "须", "给", "把", "被", "对", "跟", "已", "已经", "正在", "也", "都", "就", "再",
    "又", "刚", "才", "曾", "曾经", "还", "想", "打算", "准备",
})


# A sentence that opens with a pronoun leans on the one before it ("It is led by Dr. Ines Varga").
LEANS_BACK = re.compile(r"^\s*(?:it|its|they|their|this|these|he|she|his|her|there)\b|^\s*(?:它|他|她|该|其|这)",
                        re.IGNORECASE)


def _joins(previous: _Unit, unit: _Unit) -> bool:
    """Whether two adjacent sentences may back one claim together: in the same context, and — where two people
    speak them — only as a question and its reply, or where the second points back ("Ravi: The review is on
    Friday. Mei: I will prepare the slides." does not say who prepares anything about the review)."""
    if previous.context != unit.context:
        return False
    if not previous.speaker or not unit.speaker or previous.speaker == unit.speaker:
        return True
    return previous.text.rstrip().endswith(("?", "？")) or bool(LEANS_BACK.match(without_label(unit.text)))


def _subject_end(text: str) -> int | None:
    """Where the subject of a clause ends: at its first verb (None when no verb is recognised)."""
    if HAN_RE.search(text):
        return _subject_end_zh(text)
    m = _SUBJECT_END_EN.search(text)
    return m.start() if m else None


def _subject_end_zh(text: str) -> int | None:
    import jieba

    from ragtune.dates import time_words

    at = 0
    for word in jieba.lcut(text):
        if word in _CLAUSE_MARKS:
            return None  # no verb in the first clause: no subject to read
        if at and (word in _SUBJECT_END_ZH or word.startswith("每") or time_words(word)):
            return at
        at += len(word)
    return None


_CLAUSE_MARKS = frozenset("，,；;：:。！？!?、")


# "The slides are prepared by Ravi": in the passive, who acts follows "by".
_PASSIVE_AGENT = re.compile(r"\b(?:is|are|was|were|be|been|being)\s+(?:\w+ly\s+)?\w+(?:ed|en|t)\s+by\s+([^,.;:!?]+)",
                            re.IGNORECASE)


def _agent(text: str) -> frozenset[str]:
    """Terms of who acts in a passive English claim (after "by"); empty for any other claim."""
    m = _PASSIVE_AGENT.search(text)
    return terms_of(m.group(1)) if m else frozenset()


def _subject(text: str) -> frozenset[str]:
    """Terms of what a claim is about: the words before its first verb ('Passwords' in 'Passwords must …')."""
    end = _subject_end(text)
    return terms_of(text[:end]) if end else frozenset()


def _share(terms: frozenset[str], present: frozenset[str], weights: dict[str, float]) -> float:
    """Weighted share of ``terms`` found in ``present`` (terms without a weight count 1)."""
    if not terms:
        return 0.0
    total = sum(weights.get(t, 1.0) for t in terms)
    return sum(weights.get(t, 1.0) for t in terms if t in present) / total


def _about(frame: _Frame, wanted: dict[str, float]) -> str:
    """What a number is stated for, in a reason: the words that set its clause apart, else the clause itself."""
    words = [t for t in frame.distinct if t not in wanted and t not in _FUNCTION and t not in _META]
    if 0 < len(words) <= 3:
        return _quote(_surfaces(frame.own_text, words))
    return repr(_shorten(frame.own_text.strip(" |")))


def _same_kind(a: Quantity, b: Quantity) -> bool:
    if a.unit and b.unit:
        return a.unit == b.unit
    return a.unit is None and b.unit is None


def _by_weight(terms: Iterable[str], weights: dict[str, float]) -> list[str]:
    """Terms heaviest first (then alphabetically): reasons read the same on every run."""
    return sorted(terms, key=lambda t: (-weights.get(t, 0.0), t))


def _surface(text: str, terms: Iterable[str]) -> dict[str, str]:
    """A readable word of ``text`` for each term (terms are stems: 'reimburs' → 'reimbursed')."""
    wanted = set(terms)
    found: dict[str, str] = {}
    for word in _words(text):
        for t in _cached_terms(word):
            t = (_LATIN_SYNONYMS if t.isascii() else _synonyms()).get(t, t)
            if t in wanted and t not in found:
                found[t] = word
    return {t: found.get(t, t) for t in wanted}


def _words(text: str) -> list[str]:
    """Words as a reader sees them: Latin words whole, Chinese segmented into whole words (jieba's default cut)."""
    import jieba

    words: list[str] = []
    for token in re.findall(r"[^\W_]+(?:['-][^\W_]+)*", text):
        words.extend(jieba.lcut(token) if HAN_RE.search(token) else [token])
    return words


def _surfaces(text: str, terms: Iterable[str]) -> list[str]:
    mapping = _surface(text, terms)
    return [mapping[t] for t in terms]


def _names(text: str) -> frozenset[str]:
    """Terms of the names in a claim: capitalised words inside a sentence, acronyms, codes, quoted words."""
    found: set[str] = set()
    if detect_language(text) != "zh":
        for start, end in split_sentences(text):
            sentence = text[start:end]
            for m in _NAME_EN.finditer(sentence):
                if m.start() == 0:
                    continue
                found |= set(_terms(m.group(1)))
    for m in _QUOTED.finditer(text):
        found |= set(_terms(m.group(1)))
    for m in _HANDLE.finditer(text):
        found |= set(_terms(m.group(0)))
    return frozenset(found - _META)


def _quote(words: Sequence[str]) -> str:
    return ", ".join(dict.fromkeys(words))


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@functools.lru_cache(maxsize=1)
def default_judge() -> ClaimJudge:
    """The judge answers and evaluation use unless told otherwise: :class:`LexicalJudge`."""
    return LexicalJudge()
