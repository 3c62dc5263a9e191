"""Text rules shared by every package: CJK character classes, language detection and sentence splitting."""

from __future__ import annotations

import re

__all__ = [
    "ABBREVIATIONS",
    "CJK_WIDE",
    "HAN",
    "HAN_RE",
    "WORD_OR_HAN_RE",
    "detect_language",
    "sentences",
    "split_sentences",
]

# ---------------------------------------------------------------------------------------------- character classes

#: Han ideographs: the basic block, extension A, compatibility ideographs and the supplementary planes (B+).
HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
#: Hiragana and katakana.
KANA = "\u3040-\u30ff"
#: Hangul syllables.
HANGUL = "\uac00-\ud7af"
#: CJK punctuation (、。「」…) and full-width forms (，！？：Ａ１).
CJK_PUNCT = "\u3000-\u303f\uff00-\uffef"
#: Every character written without spaces around it in CJK text: radicals, symbols, kana, ideographs,
#: CJK punctuation and full-width forms. Text extraction joins lines and words without a space at these.
CJK_WIDE = f"\u2e80-\u9fff\uf900-\ufaff{CJK_PUNCT}"

#: One Han ideograph.
HAN_RE = re.compile(f"[{HAN}]")
#: A run of Han ideographs.
HAN_RUN_RE = re.compile(f"[{HAN}]+")
#: A word, or one Han ideograph: the usual unit for counting and comparing mixed Chinese/English text.
WORD_OR_HAN_RE = re.compile(f"[{HAN}]|[^\\W_]+")
#: One CJK wide character (see CJK_WIDE).
CJK_WIDE_RE = re.compile(f"[{CJK_WIDE}]")


# ---------------------------------------------------------------------------------------------- language

#: Share of letters that must be Han ideographs for a text to count as Chinese. Each ideograph carries about
#: a word's meaning, so Chinese text with English terms mixed in still has far fewer letters than a word count.
_ZH_SHARE = 0.3
#: Enough text to decide; reading more only costs time.
_LANGUAGE_SAMPLE = 20_000


def detect_language(text: str) -> str | None:
    """``"zh"`` when Han ideographs are a large share of the letters, ``"en"`` otherwise; None without letters."""
    sample = text[:_LANGUAGE_SAMPLE]
    letters = sum(1 for ch in sample if ch.isalpha())
    if not letters:
        return None
    return "zh" if len(HAN_RE.findall(sample)) / letters >= _ZH_SHARE else "en"


# ---------------------------------------------------------------------------------------------- sentences

#: Words that end with a period without ending the sentence ("Dr. Smith", "Fig. 3", "et al. (2020)").
#: Compared in lower case; dotted forms such as "e.g." and "U.S." are recognised by shape instead.
ABBREVIATIONS: frozenset[str] = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "rev", "gen", "col", "capt", "lt", "sgt", "hon",
    "fig", "figs", "eq", "eqs", "tab", "sec", "secs", "ch", "chap", "art", "arts", "para", "no", "nos", "vol",
    "vols", "pp", "p", "ed", "eds", "al", "cf", "vs", "approx", "ca", "est", "dept", "univ", "inc", "ltd",
    "corp", "co", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "ref",
    "refs", "resp", "viz", "min", "max", "ibid",
})

_CLOSERS = "\"'”’」』）)\\]】》〉"
_OPENERS = "\"'“‘「『（(\\[【《〈"
# A run of sentence-ending punctuation and the closing quotes or brackets that belong to the sentence.
_TERMINATOR = re.compile(f"(?:[。！？；!?]*[。！？；][。！？；!?]*|[.!?]+|…+)[{_CLOSERS}]*")
# A half-width semicolon followed by whitespace: a clause end that some callers treat as a sentence end.
_SEMICOLON = re.compile(r";(?=\s)")
# The word before a period: letters with inner periods ("e.g", "U.S") so dotted abbreviations stay whole.
_WORD_BEFORE = re.compile(r"([^\W\d_]+(?:\.[^\W\d_]+)*)\.$")
# A line that starts a new item even without punctuation before it: bullets, numbered items, Chinese
# enumerations (一、 （一） 1．), Markdown headings and table rows.
_ITEM_START = re.compile(
    r"\n[ \t]*(?:[-*+•·▪●◦‣]\s|\d{1,3}[.)、．](?!\d)|\(\d{1,3}\)|[a-zA-Z][.)]\s|\([a-zA-Z]\)"
    r"|[一二三四五六七八九十百]+、|[（(][一二三四五六七八九十]+[)）]|#{1,6}\s|\|)"
)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_LINE_BREAK = re.compile(r"\n")


def split_sentences(
    text: str, start: int = 0, end: int | None = None, *, semicolons: bool = False, line_breaks: bool = False
) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of the sentences of ``text[start:end]``, trimmed of surrounding whitespace.

    Sentences end at Chinese 。！？；…, and at English . ! ? followed by whitespace and a capital, digit,
    opening quote or Chinese character; closing quotes and brackets stay with their sentence. Periods after
    abbreviations ("e.g.", "Dr.", "U.S.", "Fig.", "et al.", "No.") and inside numbers ("3.14") do not end one.
    A blank line, or a line break before a list item, heading or table row, always does. Offsets index ``text``.

    ``semicolons``: a half-width ';' followed by whitespace also ends a sentence (claims joined by ';' are
    checked one by one). ``line_breaks``: every line break ends a sentence (generated answers, where a line
    is a statement of its own).
    """
    end = len(text) if end is None else end
    cuts = {m.start() + 1 for m in _ITEM_START.finditer(text, start, end)}
    cuts.update(m.end() for m in _BLANK_LINE.finditer(text, start, end))
    if line_breaks:
        cuts.update(m.end() for m in _LINE_BREAK.finditer(text, start, end))
    if semicolons:
        cuts.update(m.end() for m in _SEMICOLON.finditer(text, start, end))
    for match in _TERMINATOR.finditer(text, start, end):
        if _ends_sentence(text, match.group(), match.start(), match.end(), end):
            cuts.add(match.end())
    spans: list[tuple[int, int]] = []
    bounds = [start, *sorted(c for c in cuts if start < c < end), end]
    for s, e in zip(bounds, bounds[1:], strict=False):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            spans.append((s, e))
    return spans


def sentences(text: str, *, semicolons: bool = False, line_breaks: bool = False) -> list[str]:
    """The sentences of ``text`` as strings (see :func:`split_sentences`)."""
    return [text[s:e] for s, e in split_sentences(text, semicolons=semicolons, line_breaks=line_breaks)]


def _ends_sentence(text: str, mark: str, mark_start: int, pos: int, end: int) -> bool:
    """Whether the terminator ``mark`` (text[mark_start:pos]) ends a sentence."""
    core = mark.rstrip(_CLOSERS)
    if any(ch in "。！？；" for ch in core):
        return True
    following = pos
    while following < end and text[following].isspace():
        following += 1
    if following >= end:
        return True
    nxt = text[following]
    spaced = following > pos
    if core.startswith("…") or core.startswith("..."):
        # An ellipsis trails off mid-sentence unless a new sentence clearly follows it.
        return bool(HAN_RE.match(nxt)) or (spaced and (nxt.isupper() or nxt in _OPENERS))
    if not spaced:
        # "3.14", "example.com", "v1.2" — and "好的!然后" where Chinese follows half-width punctuation.
        return bool(HAN_RE.match(nxt))
    if nxt.islower():
        return False
    if core == ".":
        word = _WORD_BEFORE.search(text, max(0, mark_start - 40), mark_start + 1)
        if word and _is_abbreviation(word.group(1)):
            return False
    return nxt.isupper() or nxt.isdigit() or nxt in _OPENERS or bool(HAN_RE.match(nxt)) or not nxt.isalnum()


def _is_abbreviation(word: str) -> bool:
    # Dotted forms ("e.g", "i.e", "U.S", "Ph.D") and single initials ("J. Smith") never end a sentence here.
    return "." in word or len(word) == 1 or word.lower() in ABBREVIATIONS
