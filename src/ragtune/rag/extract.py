"""Extractive answers: the source sentence (or table row, or list item) that best answers the question, quoted and
cited — the answer when generation fails, and the path for models that cannot write the question's language."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ragtune.dates import question_dates, time_words
from ragtune.rag.claims import (
    LEANS_BACK,
    Vocabulary,
    codes_in,
    labelled_sentences,
    names_in,
    terms_of,
    without_label,
)
from ragtune.rag.quantities import stated_years
from ragtune.rag.question import SPEECH_ACTS, TIME, YES_NO, Focus
from ragtune.rag.sources import Source, passage_with_headings
from ragtune.retrieve.router import chains_relations
from ragtune.text import CJK_WIDE_RE, HAN_RE

__all__ = ["Extract", "Passage", "bridge_passages", "closest_passage", "extract_answer", "leans_back", "passages"]

_HEADING = re.compile(r"^\s*#{1,6}\s+")
_TABLE_RULE = re.compile(r"^\s*\|?[\s:|-]+\|[\s:|-]*$")
_ITEM_MARK = re.compile(
    r"^\s*(?:[-*+•·▪●◦‣](?=\s)|\d{1,3}[.)、．]|\(\d{1,3}\)|[a-zA-Z][.)]|[一二三四五六七八九十]+、)\s*")
# A sentence that asks: a question, or a request for an answer ("Just wanted to ask for the Wi-Fi password.").
_ASKS = re.compile(
    r"[?？][\s\"'”’)）\]】]*$|\b(?:wondering|wonder)\s+(?:if|whether|what|when|where|who|how)\b|"
    r"\b(?:wanted|want|like)\s+to\s+(?:ask|know|check)\b|\bchecking\s+in\s+to\s+see\b|\bcould\s+you\s+(?:tell|let)\b|"
    "请问|想问|想知道|吗[。.]?$", re.IGNORECASE)
#: The reply quoted with a passage that asks: at most this many sentences, all of the next speaker's — in a chat
#: the reply's message as a whole, as a line's is (``_rest_of_turn``): "I'm really drawn to Elrond." is the third
#: sentence of Emily's reply, "His mix of wisdom and vulnerability …" the fourth.
_REPLY_SENTENCES = 5
# How much of a list is quoted with the sentence that introduces it ("Here are a few tips you can try:").
_LIST_CHARS = 800


@dataclass
class Passage:
    """A sentence, table row or list item of a source, as it would be quoted, with the terms around it."""

    number: int  # the source's number
    text: str  # what is quoted (a table row as "Column: value, …")
    terms: frozenset[str]  # its own terms
    context: frozenset[str]  # the headings, table header and lead-in it stands under
    chunk_id: str
    position: int  # order within the source
    # The text of those headings, table header and lead-in, and of the sentence before it that states the year it
    # stands under (for the years they state).
    around: str = ""
    speaker: str = ""  # who says it, in a conversation
    block: int = 0  # passages in one block stand under the same headings of the same part
    asks: bool = False  # it asks a question (and is quoted with the reply that follows it)
    asked: frozenset[str] = frozenset()  # with a reply: the terms of the question alone
    replier: str = ""  # with a reply in a conversation: who replies
    #: In a conversation, the names said earlier in its message and in the turn before it: "I found her end
    #: haunting" is about the Cersei that the line before names.
    nearby: frozenset[str] = frozenset()


@dataclass
class Extract:
    """An extractive answer: the quoted passage with its citation, and how well it fits the question."""

    text: str
    passage: Passage
    score: float
    #: A two-hop answer: the passage that links the question to ``passage`` ("Project Lumen is led by Ada Park."
    #: before "The Lumen team works from the Harbour office."), quoted first.
    bridge: Passage | None = None


def passages(source: Source) -> list[Passage]:
    """The quotable passages of a source, in document order."""
    found: list[Passage] = []
    block = 0
    for part in source.ordered:
        block += 1
        text = passage_with_headings(part)
        headings: dict[int, tuple[frozenset[str], str]] = {}
        header: list[str] = []
        lead_in: tuple[frozenset[str], str] = (frozenset(), "")
        previous, previous_speaker = "", ""
        # The last sentence under the same headings that states a year frames those after it that state none:
        # "In 2025 the company opened two plants. Revenue grew to 5.1 million EUR." is 2025's revenue.
        dated = ""
        sentences = labelled_sentences(text)
        # Everyone who speaks in a conversation is part of what each of its lines is about.
        speakers = frozenset().union(*(terms_of(label) for _, label in sentences if label))
        # In a conversation a line answers the turn before it: "When is it happening?" / "It's on Thursday at 3 PM."
        # stand under the other speaker's "there's a web design seminar at my company this week".
        turn: tuple[str, frozenset[str], frozenset[str]] = ("", frozenset(), frozenset())  # speaker, terms, names
        replied: frozenset[str] = frozenset()
        named: frozenset[str] = frozenset()
        for raw, speaker in sentences:
            if speaker and speaker != turn[0]:
                replied, named = (turn[1], turn[2]) if turn[0] else (frozenset(), frozenset())
                turn = (speaker, frozenset(), frozenset())
            sentence = " ".join(raw.split())
            if speaker and not sentence.startswith(speaker):
                # A chat line's later sentence is quoted with its speaker: "AdamSmith: You can come by after 5 PM."
                # (and so is a list item of a message of several lines, without its mark).
                sentence = _ITEM_MARK.sub("", sentence)
                if not sentence:
                    continue
                sentence = f"{speaker}: {sentence}"
            if _HEADING.match(sentence):
                level = len(sentence) - len(sentence.lstrip("#"))
                headings = {lvl: h for lvl, h in headings.items() if lvl < level}
                headings[level] = (terms_of(sentence), sentence)
                header, lead_in, previous, dated = [], (frozenset(), ""), "", ""
                block += 1
                continue
            asks = bool(_ASKS.search(sentence))
            context = frozenset().union(*(t for t, _ in headings.values()), lead_in[0], speakers,
                                        replied if asks else frozenset())
            nearby = named | turn[2]
            if speaker:
                turn = (speaker, turn[1] | terms_of(sentence), turn[2] | names_in(sentence))
            own_years = stated_years(sentence)
            around = "\n".join([*(h for _, h in headings.values()), lead_in[1], "" if own_years else dated])
            if own_years and not sentence.startswith("|"):
                dated = sentence
            if sentence.startswith("|"):
                if _TABLE_RULE.match(sentence):
                    continue
                cells = [c.strip() for c in sentence.strip("|").split("|")]
                if not header:
                    header = cells
                    continue
                quoted = _row_text(header, cells)
                found.append(Passage(source.number, quoted, terms_of(" ".join(cells)),
                                     context | terms_of(" ".join(header)), part.chunk_id, len(found),
                                     f"{around}\n{' | '.join(header)}", speaker, block))
                continue
            header = []
            quoted = _ITEM_MARK.sub("", sentence)
            said = without_label(quoted) if speaker else quoted
            if previous and previous_speaker == speaker and leans_back(said):
                # "Helios: Red Dead Redemption 2 is a masterpiece. That game really makes you feel connected …"
                quoted = _join(previous, said)
            found.append(Passage(source.number, quoted, terms_of(quoted), context, part.chunk_id, len(found), around,
                                 speaker, block, asks, nearby=nearby))
            previous, previous_speaker = sentence, speaker
            lead_in = (terms_of(sentence), sentence) if sentence.endswith((":", "：")) else lead_in
    found = [_with_reply(p, found[p.position + 1:]) if p.asks else p for p in found]
    # The rest of a chat line's message is part of what it is about (its terms count as context, 0.7).
    return [replace(p, context=p.context.union(*(q.terms for q in rest))) if (rest := _rest_of_turn(p, found)) else p
            for p in found]


# What someone means to do, not what was done: "I will send the reminder tomorrow", "我打算明天去".
_PLAN = re.compile(r"\b(?:will|shall|going\s+to|gonna|plan(?:s|ning)?\s+to|intend(?:s|ing)?\s+to|about\s+to|"
                   r"tomorrow|tonight|later\s+today|next\s+(?:week|month|time)|soon|upcoming|off\s+to|"
                   r"in\s+a\s+(?:few|couple\s+of)\s+days)\b|['’]ll\b|"
                   "打算|准备|将要|明天|明早|明晚|下周|下个月|回头", re.IGNORECASE)


def is_plan(sentence: str) -> bool:
    """Whether a sentence announces what is to be done rather than states that it was: a question for when
    something happened is answered by the message that says it happened, not by the one that planned it."""
    return bool(_PLAN.search(without_label(sentence)))


# "That game …", "Those moments …": a demonstrative points back as a pronoun does (the claim judge's LEANS_BACK
# leaves them out: in its joins of two speakers' lines, "That sounds great" would back anything said before).
# So does a consequence: "As a result, our construction has to be postponed" says why only with the sentence before.
_POINTS_BACK = re.compile(
    r"^\s*(?:that|those|as\s+a\s+(?:result|consequence)|therefore|thus|hence|consequently|for\s+this\s+reason|"
    r"because\s+of\s+(?:this|that)|due\s+to\s+(?:this|that))\b|^\s*(?:因此|所以|因而|于是|为此)", re.IGNORECASE)


def leans_back(sentence: str) -> bool:
    """Whether a sentence opens with a pronoun or demonstrative and so leans on the one before it ("It is led by
    Dr. Ines Varga", "That game really makes you feel connected")."""
    return bool(LEANS_BACK.match(sentence) or _POINTS_BACK.match(sentence))


def _with_reply(asking: Passage, after: Sequence[Passage]) -> Passage:
    """A passage that asks, quoted with the reply that follows it under the same headings: in a conversation the
    next speaker's sentences, else the next sentence ("Just wanted to ask for the Wi-Fi password." is answered
    by the landlord's next line, "How do I reset it?" by the sentence after it). Unchanged when nothing replies."""
    reply: list[Passage] = []
    for p in after:
        if p.block != asking.block or len(reply) == _REPLY_SENTENCES:
            break
        if asking.speaker:
            if p.speaker == asking.speaker and not reply:
                continue  # the asker goes on before anyone replies
            if not p.speaker or p.speaker == asking.speaker or (reply and p.speaker != reply[0].speaker):
                break
        elif p.asks:
            break
        reply.append(p)
        if not asking.speaker or p.text.rstrip().endswith((":", "：")):
            break  # a reply that introduces a list is quoted with the list (_with_list)
    if not reply:
        return asking
    text = asking.text
    for n, p in enumerate(reply):
        said = _said(p) if n else p.text  # the speaker named once
        # A reply that leans back ("It is reset from the portal.") was already joined to the question.
        if said.startswith(text):
            text = said
            continue
        said, _ = _after_quoted(text, said)  # "Sure! It is Family123." after the "Sure!" quoted already
        if said:
            text = _join(text, said)
    return replace(asking, text=text, terms=asking.terms.union(*(p.terms for p in reply)), asked=asking.terms,
                   replier=reply[0].speaker)


def _with_list(passage: Passage, found: Sequence[Passage]) -> str:
    """A passage's text, and where it ends by introducing a list or steps ("Here are a few tips you can try:",
    "The following documents are required:") what it introduces: the passages after it (and after the reply it
    quotes) under the same headings, said by the same speaker, up to ``_LIST_CHARS``. Alone it answers nothing."""
    text = passage.text.rstrip()
    if not text.endswith((":", "：")):
        return text
    after = list(found[passage.position + 1:])
    speaker = passage.speaker
    # The reply the passage already quotes (the asker may go on first): the list follows its last sentence.
    quoted = [i for i, p in enumerate(after[:2 * _REPLY_SENTENCES + 2]) if _said(p) and _said(p) in text]
    if quoted:
        speaker = after[quoted[-1]].speaker or speaker
        after = after[quoted[-1] + 1:]
    items, size = 0, 0
    for p in after:
        if p.block != passage.block or (p.speaker and p.speaker != speaker) or size >= _LIST_CHARS:
            break
        said, joined = _after_quoted(text, _said(p))  # a sentence that leans back was quoted with the one before
        if not said:
            continue
        if items and not joined and text[-1:].isalnum():
            text += "；" if CJK_WIDE_RE.match(text[-1]) else ";"  # items without their own full stops
        text, items, size = _join(text, said), items + 1, size + len(said)
    return text


#: A chat line is quoted with the rest of its speaker's message: at most this many more sentences and characters.
_TURN_SENTENCES = 2
_TURN_CHARS = 300


def _rest_of_turn(passage: Passage, found: Sequence[Passage]) -> list[Passage]:
    """In a conversation, the sentences that follow a line in its speaker's message (at most ``_TURN_SENTENCES``),
    up to one that asks: a message is said as one, and its first sentence often only announces what the next say
    ("JakeWatson: Just wanna give you some practical tips after an intense game. Grab a snack …")."""
    rest: list[Passage] = []
    if not passage.speaker or passage.asks:
        return rest
    for p in found[passage.position + 1:]:
        if p.block != passage.block or p.speaker != passage.speaker or p.asks or len(rest) == _TURN_SENTENCES:
            break
        rest.append(p)
    return rest


def _with_turn(passage: Passage, found: Sequence[Passage], text: str) -> str:
    """``text`` (the quote of ``passage``) with the rest of its message (``_rest_of_turn``, up to ``_TURN_CHARS``);
    unchanged where it introduces a list (``_with_list`` quoted that)."""
    if text.endswith((":", "：")):
        return text
    size = 0
    for p in _rest_of_turn(passage, found):
        said, _ = _after_quoted(text, _said(p))  # a sentence that leans back was joined already
        size += len(said)
        if size > _TURN_CHARS:
            break
        if said:
            text = _join(text, said)
    return text


def _after_quoted(text: str, said: str) -> tuple[str, bool]:
    """``said`` without the sentences at its start that ``text`` already ends with, and whether it had any: a
    sentence that leans back is a passage joined to the one before it, which was quoted already."""
    for end in range(len(said), 1, -1):
        boundary = end == len(said) or said[end].isspace() or bool(CJK_WIDE_RE.match(said[end - 1]))
        if boundary and not said[end - 1].isalnum() and text.endswith(said[:end]):
            return said[end:].strip(), True
    return said, False


def _said(p: Passage) -> str:
    return (p.text.removeprefix(f"{p.speaker}: ") if p.speaker else p.text).strip()


# How much less a plan counts than a statement that it was done, when the question asks when it was done: more
# than any two passages that answer can differ in coverage (0.6 to 1), so a statement that it was done wins.
_PLAN_PENALTY = 0.4
# How much less a day without a date or hour ("this Saturday", "next week") counts than a passage that states one.
_DAY_ONLY_PENALTY = 0.1
# For "… now?": how much more the newest dated source counts than the oldest (the sources in between in order).
_LATEST_BONUS = 0.15


def extract_answer(focus: Focus, sources: Sequence[Source], *, min_coverage: float = 0.6) -> Extract | None:
    """The best passage that answers the question — fills its slot, names what it asks for and every name and
    year it holds, and covers ``min_coverage`` of its focus — quoted and cited; None when no passage does.

    Scored by the focus terms it holds (its own words count fully, those of its headings, table header or
    lead-in 0.7), then by the rank of its source and its position there.
    """
    best: Extract | None = None
    newer = _recency(sources) if focus.asks_latest else {}
    wanted = terms_of(focus.holder) if focus.holder else frozenset()
    proposes = bool(focus.terms & _ASKING_WORDS)
    per_source: list[list[Passage]] = []
    for source in sources:
        # "When did Adam tell Li Hua …": the date of the message that tells it answers.
        dated = source.best.meta.created_at if focus.dated_answer else None
        found = passages(source)
        per_source.append(found)
        holder = _holder_speaks(wanted, found)
        for passage in found:
            if holder and not _said_by(holder, passage, proposes):
                continue  # "What does Jareth praise?": Elara's line does not say what Jareth praises
            present = passage.terms | passage.context
            on = dated if dated and not question_dates(passage.text) else None  # a passage's own date comes first
            if not focus.keeps_names(present | passage.nearby) or not focus.names_head(present, passage.text) \
                    or not (on or focus.filled_by(passage.text)) or not focus.keeps_years(passage.text, passage.around):
                continue
            covered = focus.coverage(passage.terms, passage.context)
            if covered < min_coverage:
                continue
            # A question quoted with its reply answers only where no sentence of the reply answers alone; of two such
            # pairs, the one whose question is closer to the user's wins.
            if passage.asks:
                covered += 0.05 * focus.coverage(passage.asked, passage.context) - 0.05
            score = covered - 0.02 * (source.number - 1) - 0.001 * passage.position
            if on and is_plan(passage.text):
                score -= _PLAN_PENALTY  # "When did Ravi send it?": "I sent it" over "I will send it tomorrow"
            elif focus.slot == TIME and not on and not focus.states_value(passage.text):
                score -= _DAY_ONLY_PENALTY  # "this Saturday" where another passage says "at 10 AM this Saturday"
            score += _LATEST_BONUS * newer.get(source.number, 0.0)
            if best is None or score > best.score:
                text = quote(_with_turn(passage, found, _with_list(passage, found)), passage.number)
                best = Extract(said_on(on, chinese=bool(HAN_RE.search(focus.question))) + text if on else text,
                               passage, score)
    if focus.slot != YES_NO and chains_relations(focus.question):
        # Where one passage answers, two replace it only when they hold clearly more of the question.
        bridged = _bridged(focus, per_source, min_coverage=min_coverage)
        if bridged is not None and (best is None or bridged.score >= best.score + _BRIDGE_MARGIN):
            return bridged
    return best


# How much more of the question two linked passages must hold than the best single one to be quoted instead.
_BRIDGE_MARGIN = 0.1
# A link is a word few passages share: at most this share of the sources' passages (and at least two) hold it.
_LINK_SHARE = 0.2


def _bridged(focus: Focus, per_source: Sequence[Sequence[Passage]], *, min_coverage: float) -> Extract | None:
    """A two-hop answer ("Which office does the team of the project led by Ada Park work from?"): a passage that
    keeps the question's names (the bridge: "Project Lumen is led by Ada Park.") and one that fills its slot and says
    most of the rest of it about something the bridge names ("The Lumen team works from the Harbour office in
    Porto."), linked by a word both hold that the question does not and few sources share. The two together must
    cover ``min_coverage`` of the focus, and the answer must state something neither the question nor the bridge
    does. The answer need not name the head ('city' in "In which city …": "… is headquartered in Bergen"): the link
    ties it to the question; linked by a common word rather than a code or a name, the answer must hold some of
    what the bridge leaves out of the question. ``per_source``: each source's passages, in the sources' order."""
    found = [p for quoted in per_source for p in quoted]
    holders = Counter(t for quoted in per_source for t in frozenset().union(*(p.terms for p in quoted)))
    rare = max(2, int(_LINK_SHARE * len(per_source)))
    answers = [p for p in found if focus.filled_by(p.text) and focus.keeps_years(p.text, p.around)]
    # Each passage's codes, names, and the terms that never link (its times and the parts of its codes), read once.
    asked_codes = codes_in(focus.question)
    codes = {id(p): codes_in(p.text) for p in found}
    names = {id(p): names_in(p.text) for p in found}
    apart = {id(p): terms_of(" ".join(time_words(p.text) | codes[id(p)])) for p in found}
    best: Extract | None = None
    for bridge in bridge_passages(focus, found):
        have = bridge.terms | bridge.context
        rest = {t: w for t, w in focus.weights.items() if t not in have}
        if not rest:
            continue  # the bridge says it all: a one-hop answer
        for answer in answers:
            if answer.number == bridge.number and answer.position == bridge.position:
                continue
            # Not a time both name ("in March": two orders placed in March are no chain), nor a part of two codes
            # ('cx' of CX-4410 and CX-5582): codes link whole.
            link = frozenset(t for t in (bridge.terms & answer.terms) - focus.terms - apart[id(bridge)]
                             - apart[id(answer)] if holders[t] <= rare)
            # A code or a name both state ("CX-4410", "Calloway Research") ties them closer than a common word.
            strong = (codes[id(bridge)] & codes[id(answer)]) - asked_codes \
                | link & names[id(bridge)] & names[id(answer)]
            if not (strong or link) or not (answer.terms - bridge.terms - focus.terms - link):
                continue
            if not strong and not rest.keys() & (answer.terms | answer.context):
                continue  # joined by a common word, it must say some of what the bridge leaves out
            covered = focus.coverage(bridge.terms | answer.terms, bridge.context | answer.context)
            if covered < min_coverage:
                continue
            score = covered - 0.02 * (answer.number + bridge.number - 2) - 0.001 * (answer.position + bridge.position)
            if best is None or score > best.score:
                gap = "" if HAN_RE.search(focus.question) else " "
                text = quote(bridge.text, bridge.number) + gap + quote(answer.text, answer.number)
                best = Extract(text, answer, score, bridge)
    return best


def bridge_passages(focus: Focus, found: Sequence[Passage]) -> list[Passage]:
    """Of ``found``, the passages that may link a multi-hop question to its answer: they keep the question's names,
    best first (most of its focus, then the better source)."""
    kept = [p for p in found if focus.keeps_names(p.terms | p.context | p.nearby)]
    return sorted(kept, key=lambda p: (-focus.coverage(p.terms, p.context), p.number, p.position))


def _holder_speaks(holder: frozenset[str], found: Sequence[Passage]) -> frozenset[str]:
    """The terms of the person whose words or view the question asks about (``Focus.holder``), where that person
    speaks in these passages; else empty."""
    if holder and any(holder <= terms_of(s) for s in {p.speaker for p in found if p.speaker}):
        return holder
    return frozenset()


# A question asked in a conversation says what its asker proposes or asks ("How about some cold beer?"); what
# anyone else thinks or says is in the reply.
_ASKING_WORDS = SPEECH_ACTS | Vocabulary("ask asks asked question 询问 提问")


def _said_by(holder: frozenset[str], passage: Passage, proposes: bool) -> bool:
    """Whether the holder says what the passage answers with: their own line, the reply they give to a question,
    or (``proposes``: the question asks what they suggest or ask) the question they ask."""
    if passage.replier:
        return holder <= terms_of(passage.replier) or (proposes and holder <= terms_of(passage.speaker))
    return holder <= terms_of(passage.speaker)


def _recency(sources: Sequence[Source]) -> dict[int, float]:
    """Each dated source's place from the oldest (0) to the newest (1) of the sources' documents."""
    dates = sorted({s.best.meta.created_at for s in sources if s.best.meta.created_at})
    if len(dates) < 2:
        return {}
    place = {d: i / (len(dates) - 1) for i, d in enumerate(dates)}
    return {s.number: place[s.best.meta.created_at] for s in sources if s.best.meta.created_at}


def said_on(created_at: str, *, chinese: bool = False) -> str:
    """The date (and time of day) a passage was written, to lead an answer: "On 2026-03-01 13:00: "."""
    day, _, clock = created_at.partition("T")
    clock = clock[:5] if len(clock) >= 5 and clock[2:3] == ":" else ""
    if chinese:
        return f"{day}{' ' + clock if clock else ''}："
    return f"On {day}{' ' + clock if clock else ''}: "


def closest_passage(source: Source, focus: Focus) -> str:
    """The passage of a source closest to the question (its first one on a tie): the snippet a reader sees."""
    found = passages(source)
    if not found:
        return ""
    return max(found, key=lambda p: (focus.coverage(p.terms, p.context), -p.position)).text


def quote(text: str, number: int) -> str:
    """A passage quoted and cited: “…” [n]."""
    closing = "" if CJK_WIDE_RE.match(text[-1:] or " ") else " "
    return f"“{text}”{closing}[{number}]"


def _row_text(header: list[str], cells: list[str]) -> str:
    separator = "，" if HAN_RE.search(" ".join(cells)) else ", "
    colon = "：" if separator == "，" else ": "
    pairs = [f"{h}{colon}{c}" if h else c for h, c in zip(header, cells, strict=False) if c]
    return separator.join(pairs)


def _join(previous: str, sentence: str) -> str:
    return f"{previous}{sentence}" if CJK_WIDE_RE.match(previous[-1:]) else f"{previous} {sentence}"
