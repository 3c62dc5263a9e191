"""What a question asks for: the terms it is about and the kind of answer that fills it (a number, a name, ...),
to tell an answer from a supported sentence that does not answer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ragtune.dates import time_words
from ragtune.rag.claims import Vocabulary, codes_in, names_in, strip_markers, terms_of
from ragtune.rag.quantities import UNITS, quantities, stated_years, year_of
from ragtune.text import HAN_RE

__all__ = ["Focus", "analyse_question", "is_follow_up"]

# Kinds of answer: a number or amount, a time or date, a name (person, place, product), new information of any
# kind, or yes/no.
NUMBER, TIME, NAME, OPEN, YES_NO = "number", "time", "name", "open", "yes/no"

# "how many", "how long", "how soon" …: how asks for an amount, not a way.
_HOW_AMOUNT_WORDS = "many|much|long|often|far|large|big|high|old|early|late|soon|fast|heavy|tall"
_WH_EN = re.compile(
    rf"\b(?:how\s+(?:{_HOW_AMOUNT_WORDS})|what\s+time|"
    r"what\s+percentage|what\s+share|up\s+to\s+what|(?:what|who|when|where|how)['’]s|what|which|who|whom|whose|"
    r"when|where|why|how|"
    r"is|are|was|were|do|does|did|can|could|should|must|will|would|may|have\s+to|has\s+to|i|we|my|our|"
    r"there|please|tell\s+me|know|"
    # "What is the name of the gym …" asks for a name: the answer says "a gym called FitZone", not "name".
    r"(?:the\s+)?(?:name|title)s?\s+of)\b",
    re.IGNORECASE,
)
_WH_ZH = re.compile("多少钱|多少|几点|几天|几个|几|多久|多长时间|多长|多大|多高|多远|什么时候|何时|哪一天|哪天|"
                    "什么名字|什么|哪个|哪家|哪些|哪里|哪儿|哪|谁|吗|呢|如何|怎么样|怎么|为什么|是否|请问")
_NUMBER_EN = re.compile(
    r"\bhow\s+(?:many|much|long|often|far|large|big|high|old|fast|heavy|tall)\b|\bwhat\s+(?:percentage|share)|"
    # The asked-for thing is named before any verb or relative pronoun: not "What is the article that Chae shares".
    r"\bup\s+to\s+what\b|\b(?:what|which)\s+(?:(?:is|are|was|were)\s+)?(?:the\s+)?"
    r"(?:(?!(?:that|which|who|whom|does|did|do|is|are|was|were)\b)[\w-]+\s+){0,3}?(?:limit|price|cost|"
    r"budget|amount|number|rate|fee|allowance|stipend|salary|deadline|window|duration|size|length|percentage|share|"
    r"threshold|maximum|minimum|capacity|age|height|distance|weight|temperature|count|total|sum|value|extension|"
    r"floor)s?\b|\bwhich\s+(?:extension|floor|number)\b|\bon\s+which\s+floor\b",
    re.IGNORECASE,
)
# When something happened in the past, or when it was said: a dated message answers (not "When is the seminar?",
# nor "When is the concert that Wolfgang invites him to?", where the saying is only in a relative clause).
_WHEN_SAID_EN = re.compile(
    r"\bwhen\s+(?:did|was|were|had)\b|\bwhen\b(?:(?!\b(?:that|which|who|whom)\b).)*\b(?:discuss|mention|talk|said|"
    r"say|tell|told|inform|ask|announc|shar|sent|send|remind|invit|messag|report|post)", re.IGNORECASE)
_WHEN_SAID_ZH = re.compile("(?:什么时候|何时|哪天|哪一天)(?:.*(?:说|提到|告诉|通知|讨论|聊|问|邀请|提醒|宣布|分享|发)|"
                           ".*了|.*的[？?]?$)|是(?:什么时候|哪天|哪一天).*的")
_LATEST = re.compile(r"\b(?:now|currently|current|latest|still|most\s+recent|anymore|these\s+days)\b|"
                     "现在|目前|最新|最近|仍然", re.IGNORECASE)
_PROPER_NAME = r"(?-i:[A-Z][\w-]*(?:\s+[A-Z][\w-]*)*)"
# Whose words or view a question asks about: named as such ("according to Tamara", "in Merrick's opinion", "Li Hua's
# reaction"), else the subject of "what does X …" (not "what time can X come by", where X need not be who says it).
_HOLDER_NAMED_EN = re.compile(
    rf"\baccording\s+to\s+({_PROPER_NAME})|\bin\s+({_PROPER_NAME})['’]s\s+(?:opinion|view|words|eyes|mind)\b|"
    rf"\b({_PROPER_NAME})['’]s\s+(?:opinion|view|reaction|response|feedback|impression|thoughts?|take|answer|reply|"
    r"advice|suggestion|recommendation|favou?rite)\b", re.IGNORECASE)
_HOLDER_SUBJECT_EN = re.compile(
    r"\b(?:what|which|how|why|when|where|who|whom)\b(?:\s+[\w’'-]+){0,4}?\s+(?:does|did|do)\s+"
    rf"({_PROPER_NAME})\b(?!['’]s)", re.IGNORECASE)
# 根据王梅的说法 / 在王梅看来 / 王梅的看法; else a question that opens with a name and a verb of thinking or saying:
# 王梅觉得…, 拉维推荐哪家餐厅.
_HOLDER_ZH = re.compile(
    "(?:根据|按照|据)([\u4e00-\u9fff]{2,4}?)的(?:说法|意见|看法|观点)|在([\u4e00-\u9fff]{2,4}?)看来|"
    "([\u4e00-\u9fff]{2,4}?)的(?:看法|意见|观点|反应|建议|评价|感受)|"
    "^([\u4e00-\u9fff]{2,4}?)(?:觉得|认为|推荐|建议|提议|说|喜欢|最喜欢|想要|打算)")
_CLOCK = re.compile(r"\bwhat\s+time\b|\bat\s+what\s+hour\b|几点", re.IGNORECASE)
_TIME_EN = re.compile(r"\bwhat\s+time\b|\bwhen\b|\b(?:what|which)\s+(?:date|day|year|month)\b", re.IGNORECASE)
_NAME_EN = re.compile(r"\bwho(?:m|se)?\b|\bwhich\b|\bwhere\b", re.IGNORECASE)
_YES_NO_EN = re.compile(r"^\s*(?:is|are|was|were|can|could|does|do|did|should|must|will|would|has|have|may)\b",
                        re.IGNORECASE)
_NUMBER_ZH = re.compile("多少|几|多久|多长|多大|多高|多远|比例|百分之几|上限是|标准是")
_TIME_ZH = re.compile("几点|什么时候|何时|哪一天|哪天|哪年|哪月|日期")
_NAME_ZH = re.compile("谁|哪个|哪家|哪些|哪里|哪儿|哪|什么")
_YES_NO_ZH = re.compile("吗[？?]?\\s*$|是否|能否|可否")

# A follow-up leans on the conversation: it opens with 'and'/'what about', names no subject of its own, or
# points back with a pronoun.
_FOLLOW_UP_EN = re.compile(
    r"^\s*(?:and|also|what\s+about|how\s+about|what\s+if|same\s+for|then|or)\b|\b(?:it|its|they|them|their|this|"
    r"that|these|those|he|she|him|her|there)\b", re.IGNORECASE)
_FOLLOW_UP_ZH = re.compile("^\\s*(?:那|那么|还有|另外|而|又)|呢[？?]?\\s*$|它|他们|她们|这个|那个|其")


@dataclass
class Focus:
    """A question's focus: weighted content terms (what the answer must be about), names it must keep, and the
    kind of answer that fills it."""

    question: str
    weights: dict[str, float]
    names: frozenset[str]
    slot: str
    asked_values: frozenset[str] = field(default_factory=frozenset)  # numbers the question already states
    #: The words the asked-for thing is named by ('patents' in 'How many patents …', '平台' in '哪个平台'); an
    #: answer must be about one of them, or state an amount in one of ``head_units``.
    heads: frozenset[str] = field(default_factory=frozenset)
    head_units: frozenset[str] = field(default_factory=frozenset)
    #: A follow-up's borrowed terms (from the earlier question): they add to a passage's coverage where it holds
    #: them and never count against one that does not (a follow-up may change the subject).
    borrowed: dict[str, float] = field(default_factory=dict)

    @property
    def wants_name(self) -> bool:
        """It asks for the name or title of something ("What is the name of the gym …"): an answer names one."""
        return not HAN_RE.search(self.question) and bool(_NAME_OF.search(self.question))

    @property
    def holder(self) -> str:
        """Whose words or view the question asks about ("What does Evangeline say …", "Which game does Jareth
        praise …", "… according to Tamara", "in Merrick's opinion", "What is Li Hua's reaction …"), or ''. In a
        conversation where that person speaks, their own lines (or a question they ask or answer) answer."""
        q = self.question
        found = (_HOLDER_ZH.search(q) if HAN_RE.search(q)
                 else _HOLDER_NAMED_EN.search(q) or _HOLDER_SUBJECT_EN.search(q))
        return next((g for g in found.groups() if g), "") if found else ""

    @property
    def asks_latest(self) -> bool:
        """It asks how things stand now ("When is the review now?", "What is the latest plan?", "目前…"): where
        dated messages say different things, the latest one answers (a review moved to Tuesday is no longer on
        Friday)."""
        return bool(_LATEST.search(self.question))

    @property
    def dated_answer(self) -> bool:
        """It asks when something was said or done ("When did Adam tell Li Hua …", "When was the sale discussed?",
        "李华什么时候通知的房东？"): the date of the message or minutes that say it answers, where the passage
        names no date of its own."""
        if self.slot != TIME:
            return False
        pattern = _WHEN_SAID_ZH if HAN_RE.search(self.question) else _WHEN_SAID_EN
        return bool(pattern.search(self.question))

    @property
    def asked_years(self) -> frozenset[str]:
        """The years the question states as years ('the 2030 budget', '2030年'; a full date binds no year)."""
        return frozenset(y for q in quantities(self.question) if (y := year_of(q)) == q.value)

    @property
    def terms(self) -> frozenset[str]:
        return frozenset(self.weights)

    def coverage(self, present: Iterable[str], around: Iterable[str] = (), *, around_credit: float = 0.7) -> float:
        """Weighted share of the focus terms in ``present`` (1.0 for a question without content terms); terms
        only in ``around`` (the headings, table header or lead-in a passage stands under) count ``around_credit``."""
        have, near = set(present), set(around)

        def credit(terms: dict[str, float]) -> float:
            return sum(w if t in have else around_credit * w if t in near else 0.0 for t, w in terms.items())

        total = sum(self.weights.values())
        if not total:
            return 1.0
        extra = credit(self.borrowed)
        return (credit(self.weights) + extra) / (total + extra)

    def keeps_names(self, present: Iterable[str]) -> bool:
        return self.names <= set(present)

    def keeps_years(self, *texts: str) -> bool:
        """Whether every year the question states ('the 2030 budget', '2030年的预算') is stated in ``texts`` (a
        passage and the headings, table header or lead-in it stands under): a passage about the 2027 launch does
        not answer when the 2030 one is asked for. Other numbers a question states are often not in the answer
        ('which two pastries', 'more than 7 days'), so only years bind."""
        if not self.asked_years:
            return True
        return self.asked_years <= frozenset().union(*(stated_years(text) for text in texts))

    def names_head(self, present: Iterable[str], text: str) -> bool:
        """Whether a passage is about what was asked for: it holds a head word, or states an amount in its unit."""
        if not self.heads and not self.head_units:
            return True
        if self.heads & set(present):
            return True
        return any(q.unit in self.head_units for q in quantities(strip_markers(text)))

    def answered_by(
        self, text: str, present: Iterable[str], *, evidence: Sequence[str] = (), min_coverage: float = 0.5
    ) -> bool:
        """Whether ``text`` (with ``present``: its terms and those of the passages around it) answers: it fills
        the slot, keeps the question's names and head, holds ``min_coverage`` of its focus, and the passages that
        back it (``evidence``, with their headings) state the years the question states."""
        have = set(present)
        return (self.filled_by(text) and self.keeps_names(have) and self.names_head(have, text)
                and self.coverage(have) >= min_coverage and self.keeps_years(*evidence))

    def states_value(self, text: str) -> bool:
        """Whether ``text`` states a number, date or clock time the question does not (citation markers aside)."""
        return any(q.value not in self.asked_values for q in quantities(strip_markers(text)))

    def filled_by(self, text: str) -> bool:
        """Whether ``text`` holds what the question asks for: a number it does not state itself, or new terms."""
        if self.slot == YES_NO:
            return True
        text = strip_markers(text)  # a citation marker '[1]' is not a number the answer states
        if self.slot in (NUMBER, TIME):
            # "on Friday", "next Tuesday", "明天": a day without a number (not the hour "what time" asks for).
            return self.states_value(text) or self.slot == TIME and not _CLOCK.search(self.question) and bool(
                time_words(text) - time_words(self.question))
        if self.wants_name:
            # A name the question does not hold: capitalised inside a sentence, quoted, or a code (a chat line's
            # speaker label names who talks, not what was asked).
            return bool(names_in(_SPEAKER_LABEL.sub("", text)) - names_in(self.question) - self.terms)
        stated = quantities(text)
        units = frozenset().union(*(terms_of(text[q.start:q.end]) for q in stated))
        new = terms_of(text) - self.terms - units
        # A code or password ('Family123', 'FAC-22') is an answer the terms leave out.
        return bool(new or codes_in(text) - codes_in(self.question)) or any(
            q.value not in self.asked_values for q in stated)


def analyse_question(question: str, *, context: str = "", context_weight: float = 0.25) -> Focus:
    """The focus of ``question``; ``context`` (the conversation's earlier question, for a follow-up) lends its
    terms at ``context_weight`` (see ``Focus.borrowed``) and its kind of answer when the follow-up names none."""
    chinese = bool(HAN_RE.search(question))
    stripped = (_WH_ZH if chinese else _WH_EN).sub(" ", question if chinese else _WHERE_SAID_EN.sub(" ", question))
    weights = {t: _HALF_WEIGHT if t in _HALF_WEIGHT_TERMS else 1.0 for t in terms_of(stripped)}
    unit_words: set[str] = set()
    for q in quantities(question):
        # '2,000 EUR' in a question narrows it; its unit word is not a topic or name of its own.
        unit_words |= terms_of(question[q.start:q.end])
    for t in unit_words:
        weights.pop(t, None)
    slot = _slot(question, chinese)
    borrowed: dict[str, float] = {}
    if context:
        earlier = terms_of((_WH_ZH if HAN_RE.search(context) else _WH_EN).sub(" ", context))
        if weights:
            borrowed = {t: context_weight for t in earlier if t not in weights}
        else:
            weights = {t: 1.0 for t in earlier}  # "What about it?" asks the earlier question again
        if slot == OPEN:
            slot = _slot(context, bool(HAN_RE.search(context)))
    heads, units = _heads(question, chinese)
    if slot == TIME:
        # "What day is the review?" is answered by "on Friday", which says neither "day" nor an amount of days.
        heads -= _TIME_HEADS
        units = frozenset(u for u in units if u not in _TIME_UNITS)
        for m in () if chinese else _HEAD_EN.finditer(question):
            for t in terms_of(m.group(1)) & _TIME_HEADS:
                weights.pop(t, None)
    return Focus(question, weights, names_in(question) - unit_words, slot,
                 frozenset(q.value for q in quantities(question)), heads, units, borrowed)


# The words after 'how many', 'which', 'what' up to the verb name what is asked for; Chinese names it after 哪个.
# "What kinds of flowers", "which type of lighting": the head is what comes after the classifier and its 'of'.
_HEAD_EN = re.compile(r"\b(?:how\s+many|how\s+much|which|what)\s+(?:(?:kinds?|types?|sorts?|varieties|variety|"
                      r"forms?|categories|category|genres?|styles?|brands?)\s+of\s+)?((?:[\w-]+\s+){0,2}[\w-]+)",
                      re.IGNORECASE)
# A chat line's speaker label: "WolfgangSchulz: " (at the start of the line or of a quoted reply).
_SPEAKER_LABEL = re.compile(r"(?:^|(?<=[.!?…]\s))[A-Z][\w.'’-]{0,40}:\s")
# "What is the name of the gym …": the head is what the name is of.
_NAME_OF = re.compile(r"\b(?:name|title)s?\s+of\s+(?:(?:the|a|an|his|her|their|its)\s+)?((?:[\w-]+\s+){0,2}[\w-]+)",
                      re.IGNORECASE)
_HEAD_STOP = re.compile(
    r"\b(?:is|are|was|were|be|do|does|did|can|could|will|would|should|must|has|have|had|of|for|in|on|to|at|by|"
    r"the|a|an|time|that|which|who)\b.*", re.IGNORECASE)
_NAME_WORDS_ZH = frozenset({"名字", "名称"})  # 叫什么名字 asks for a name, not for a thing called 名字
_HEAD_ZH = re.compile("(?:哪个|哪些|哪种|哪一个|什么(?!时候))([\u4e00-\u9fff]{1,3})")
_UNIT_ZH = re.compile("(?:多少|几)(个月|个小时|个工作日|分钟|小时|天|周|年|月|次|元|人|钱)")
# Words for how something was said ("Who initiates the suggestion to go to the store?", "What does Emily
# recommend?"): the passage shows it by what it says ("Wanna hit the grocery store after work?"), rarely by the
# word, so they count half in a passage's coverage.
SPEECH_ACTS = Vocabulary("suggest suggests suggestion propose proposes proposal recommend recommends recommendation "
                        "initiate initiates advise advice offer offers invite invites invitation mention mentions "
                        "建议 推荐 提议 邀请 提出 发起")
# "When is the review now?": "now" says which message answers (the newest, see ``Focus.asks_latest``); a passage
# that states the answer rarely repeats it, so these words count half as well.
_NOW_WORDS = Vocabulary("now currently still 现在 目前 仍然")
_HALF_WEIGHT_TERMS = SPEECH_ACTS | _NOW_WORDS
_HALF_WEIGHT = 0.5
_TIME_HEADS = Vocabulary("day date time year month week hour 日期 时间 日子")
# Heads that name only the kind of answer ("What aspects of Sekiro does Thane highlight?", "What suggestions does
# Jennifer give?"): the answer says the aspect or the suggestion, rarely the word, so a passage need not hold them.
_ABSTRACT_HEADS = Vocabulary("aspect aspects feature features suggestion suggestions tip tips advice idea ideas "
                           "strategy strategies way ways thing things part parts reason reasons "
                           "方面 建议 办法 方法 原因")
_TIME_UNITS = frozenset(UNITS[w] for w in ("day", "days", "week", "month", "year", "hour") if w in UNITS)
# Words that ask for an amount of a unit rather than name a thing: 'what share' wants a percentage.
_HEAD_AS_UNIT = {"share": "%", "percentage": "%", "proportion": "%", "钱": "cny"}


def _heads(question: str, chinese: bool) -> tuple[frozenset[str], frozenset[str]]:
    words: list[str] = []
    if chinese:
        words += [m.group(1) for m in _HEAD_ZH.finditer(question) if m.group(1) not in _NAME_WORDS_ZH]
        words += [m.group(1) for m in _UNIT_ZH.finditer(question)]
    else:
        for m in (*_NAME_OF.finditer(question), *_HEAD_EN.finditer(question)):
            words += _HEAD_STOP.sub("", m.group(1)).split()
    heads: set[str] = set()
    units: set[str] = set()
    for word in words:
        unit = _HEAD_AS_UNIT.get(word.lower()) or UNITS.get(word.lower())
        if unit:
            units.add(unit)
        else:
            heads |= terms_of(word)
    return frozenset(heads - _ABSTRACT_HEADS), frozenset(units)


# Where the question says it was said, not what it is about: "according to the discussion on 20260507", "in their
# conversation on 20260717", "as mentioned in the conversation" (the date picks the document; retrieval reads it).
_WHERE_SAID_EN = re.compile(
    r"\b(?:according\s+to|in|from|during|as\s+(?:mentioned|discussed|said)\s+in)\s+(?:the|their|our|his|her|this|"
    r"that)\s+(?:[\w'’-]+\s+){0,2}?(?:discussion|conversation|chat|talk|messages?|exchange)s?"
    r"(?:\s+(?:on|of|from|at)\s+\d[\w:_.-]*)?(?=\s*(?:[?.,;!]|$))", re.IGNORECASE)
# The question word it opens with decides its kind: "Why can't people sit on the benches when Turalyon …" asks why.
_FIRST_WH_EN = re.compile(r"\b(what|which|who|whom|whose|when|where|why|how)\b", re.IGNORECASE)
_HOW_AMOUNT = re.compile(rf"\s+(?:{_HOW_AMOUNT_WORDS})\b", re.IGNORECASE)


def _slot(question: str, chinese: bool) -> str:
    if chinese:
        if _TIME_ZH.search(question):
            return TIME
        if _NUMBER_ZH.search(question):
            return NUMBER
        if _NAME_ZH.search(question):
            return NAME
        return YES_NO if _YES_NO_ZH.search(question) else OPEN
    first = _FIRST_WH_EN.search(question)
    lead = first.group(1).lower() if first else ""
    if lead == "why" or lead == "how" and first is not None and not _HOW_AMOUNT.match(question, first.end()):
        return OPEN
    if _NUMBER_EN.search(question):
        return NUMBER
    time = _TIME_EN.search(question)
    # A later "when" joins a clause ("What did Adam say when …"); "what time", "which day" ask for a time anywhere.
    if time and (lead == "when" or not time.group(0).lower().startswith("when")):
        return TIME
    if _NAME_EN.search(question):
        return NAME
    return YES_NO if _YES_NO_EN.match(question) else OPEN


def is_follow_up(question: str) -> bool:
    """Whether a question leans on the conversation before it ('And in Berlin?', '那上海呢？', 'Who leads it?')."""
    chinese = bool(HAN_RE.search(question))
    if (_FOLLOW_UP_ZH if chinese else _FOLLOW_UP_EN).search(question):
        return True
    stripped = (_WH_ZH if chinese else _WH_EN).sub(" ", question)
    return len(terms_of(stripped)) < 2
