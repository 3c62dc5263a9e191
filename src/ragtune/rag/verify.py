"""Sentence-by-sentence verification of a generated answer: prompt echoes, repeats and loops removed, every
sentence checked as a claim, every citation checked, and nothing released before a sentence answers the question."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ragtune.rag.citations import CitedSentence, join_sentences, split_cited_sentences, with_markers
from ragtune.rag.claims import ClaimJudge, split_claims, strip_markers, terms_of
from ragtune.rag.extract import Passage, leans_back, passages
from ragtune.rag.quantities import compatible, quantities
from ragtune.rag.question import YES_NO, Focus
from ragtune.rag.sources import Source, section, shorten
from ragtune.text import HAN_RE, split_sentences
from ragtune.types import Citation, Hit, RemovedCitation, RemovedClaim

__all__ = ["AnswerVerifier", "VerifiedAnswer", "is_loop", "verify_answer"]

# The same 1–16 characters four times in a row: "1.1.1.1.", "the the the the".
_LOOP = re.compile(r"(.{1,16}?)\1{3,}", re.DOTALL)
# The particle that opens an answer to a yes/no question: "Yes, …", "No. …", "是的，…", "不是。…".
_YES_NO = re.compile(r"^\s*(?:(?:yes|no)\b[,.!:;]?|(?:是的|是|对|不是|没有|不)[，,。：:！!])\s*", re.IGNORECASE)
# A sentence that stops on an article, preposition, conjunction or copula was cut off, not finished
# ("The app used for this is [1].", "electric cars charge on").
_DANGLING = re.compile(
    r"(?:\b(?:a|an|the|of|to|in|on|at|for|by|with|from|and|or|but|is|are|was|were|be|as|than|that|which|who|its|"
    r"their|our|your|his|her|my|this|these|those)|[的是为在和与及或：:，,])\W*$", re.IGNORECASE)
_ENDS_SENTENCE = re.compile(r"[.!?。！？…]['\"”’」』）)\]】]*\s*(?:\[[^\]]*\]\s*)*[.!?。！？]?$")


# How much of a question's focus a newer source must hold to be about the same thing (see ``_superseded``).
_ABOUT_IT = 0.6


def is_loop(text: str) -> bool:
    """A generation loop: a short stretch repeated four times or more."""
    return bool(_LOOP.search(text))


@dataclass
class VerifiedAnswer:
    """What survived verification: the released text, its citations, and what was removed and why."""

    text: str = ""
    citations: list[Citation] = field(default_factory=list)
    removed_claims: list[RemovedClaim] = field(default_factory=list)
    removed_citations: list[RemovedCitation] = field(default_factory=list)
    answered: bool = False


@dataclass
class _Kept:
    text: str
    numbers: list[int]
    added: set[int]
    scores: dict[int, float]
    evidence: dict[int, str]


def verify_answer(
    answer: str, focus: Focus, sources: Sequence[Source], judge: ClaimJudge, *, language: str = "en",
    truncated: bool = False,
) -> VerifiedAnswer:
    """Verify a whole generated answer at once (what streaming releases piece by piece)."""
    verifier = AnswerVerifier(focus, sources, judge, language=language)
    verifier.feed(answer)
    verifier.close(truncated=truncated)
    return verifier.result


class AnswerVerifier:
    """Feed it generated text as it arrives; it releases verified sentences only.

    A sentence is released when it is complete (the next one has begun, or generation ended), is not an echo of
    the prompt, a repeat (also a truncated one) or a loop, is supported by a source according to the claim judge,
    and the answer so far answers the question (fills its slot, about its focus). Supported sentences before the
    first answering one wait for it; if none comes, nothing is released. Its citations are checked one by one:
    a citation of a source that does not support its sentence is removed; a supported sentence that cites
    nothing gets its supporting source's number.
    """

    def __init__(self, focus: Focus, sources: Sequence[Source], judge: ClaimJudge, *, language: str = "en") -> None:
        self.focus = focus
        self.sources = list(sources)
        self.contexts = [s.context for s in self.sources]
        self.judge = judge
        self.language = language
        self.result = VerifiedAnswer()
        self._raw = ""
        self._done = 0  # sentences of _raw already judged
        self._pending: list[_Kept] = []
        self._released: list[_Kept] = []
        self._seen: list[str] = []
        self._failed_in_a_row = 0
        self._passages: dict[int, list[Passage]] = {}  # each source's quotable passages, read when first needed

    # ------------------------------------------------------------------ streaming

    def feed(self, piece: str) -> str:
        """Take more generated text; return the newly released text (with its leading space), often ''."""
        self._raw += piece
        sentences = split_cited_sentences(self._raw)
        # The last sentence may still grow (or take the markers that follow it), so it waits.
        return self._judge(sentences[self._done : max(len(sentences) - 1, self._done)])

    def close(self, *, truncated: bool = False) -> str:
        """Generation ended (``truncated``: at the length limit); judge what is left and return what is released."""
        sentences = split_cited_sentences(self._raw.rstrip().rstrip("\ufffd"))
        rest = sentences[self._done :]
        if truncated and rest and not _ENDS_SENTENCE.search(rest[-1].text):
            cut = rest.pop()
            if cut.plain.strip():
                self.result.removed_claims.append(RemovedClaim(claim=cut.plain, reason="cut off at the length limit"))
        released = self._judge(rest)
        self._finish()
        return released

    # ------------------------------------------------------------------ judging

    def _judge(self, sentences: Sequence[CitedSentence]) -> str:
        released = ""
        for sentence in sentences:
            self._done += 1
            kept = self._check(sentence)
            if kept is None:
                self._failed_in_a_row += 1
                continue
            self._failed_in_a_row = 0
            self._pending.append(kept)
            if not self.result.answered and self._answers(kept):
                self.result.answered = True
            if self.result.answered:
                released += self._release()
        return released

    def _check(self, sentence: CitedSentence) -> _Kept | None:
        removed = self.result.removed_claims
        # "Yes, X." to a yes/no question: the particle is the answer, X the claim that must be supported.
        particle = _YES_NO.match(sentence.text) if self.focus.slot == YES_NO else None
        text = sentence.text[particle.end():] if particle else sentence.text
        if particle and not terms_of(strip_markers(text)):
            removed.append(RemovedClaim(claim=sentence.plain, reason="a bare yes or no the sources cannot confirm"))
            return None
        claims = split_claims(text, self.language)
        if not claims:
            if terms_of(sentence.plain):
                removed.append(RemovedClaim(claim=sentence.plain, reason="repeats the prompt, not an answer"))
            return None
        claim = " ".join(claims)
        key = _key(claim)
        if any(key == seen or seen.startswith(key) for seen in self._seen):
            removed.append(RemovedClaim(claim=claim, reason="repeats an earlier sentence"))
            return None
        self._seen.append(key)
        if is_loop(sentence.plain):
            removed.append(RemovedClaim(claim=claim, reason="a generation loop"))
            return None
        if _DANGLING.search(claim):
            removed.append(RemovedClaim(claim=claim, reason="an unfinished sentence"))
            return None
        (check,) = self.judge.check([claim], self.contexts, question=self.focus.question, language=self.language)
        if not check.supported:
            removed.append(RemovedClaim(claim=claim, reason=check.reason, score=check.score))
            return None
        ambiguous = self._ambiguous_value(claim)
        if ambiguous:
            removed.append(RemovedClaim(claim=claim, reason=ambiguous, score=check.score))
            return None
        kept = _Kept(claim, [], set(), {}, {})
        for n in sentence.numbers:
            if not 1 <= n <= len(self.sources):
                self.result.removed_citations.append(RemovedCitation(
                    number=n, sentence=claim, reason=f"there is no source [{n}] (sources are 1–{len(self.sources)})"))
                continue
            (own,) = self.judge.check([claim], [self.contexts[n - 1]], question=self.focus.question,
                                      language=self.language)
            if not own.supported:
                self.result.removed_citations.append(RemovedCitation(
                    number=n, sentence=claim, reason=f"source [{n}] does not support this sentence: {own.reason}"))
                continue
            kept.numbers.append(n)
            kept.scores[n], kept.evidence[n] = own.score, own.evidence
        if not kept.numbers and check.source is not None:
            # Small models often forget to cite what they copied: the supporting source is named for them.
            n = check.source + 1
            kept.numbers.append(n)
            kept.added.add(n)
            kept.scores[n], kept.evidence[n] = check.score, check.evidence
        superseded = self._superseded(kept.numbers)
        if superseded:
            removed.append(RemovedClaim(claim=claim, reason=superseded, score=check.score))
            return None
        kept.text = with_markers(claim, "".join(f"[{n}]" for n in kept.numbers))
        if particle:
            kept.text = f"{particle.group(0).strip()} {kept.text}" if not HAN_RE.match(kept.text) else \
                f"{particle.group(0).strip()}{kept.text}"
        return kept

    def _superseded(self, numbers: Sequence[int]) -> str:
        """For a question about how things stand now ("When is the review now?"): why a sentence backed only by
        older messages does not answer, where a newer dated source is about the question too (the review moved
        since), or ''."""
        if not self.focus.asks_latest or not numbers:
            return ""
        dated = {n: s.best.meta.created_at for n, s in enumerate(self.sources, 1) if s.best.meta.created_at}
        backed = [dated[n] for n in numbers if n in dated]
        if not backed:
            return ""
        for n, created in sorted(dated.items(), key=lambda item: item[1], reverse=True):
            if created <= max(backed):
                break
            if self.focus.coverage(terms_of(self.contexts[n - 1])) >= _ABOUT_IT:
                return f"source [{n}] of {created[:10]} is newer and about this too: how things stand now is its to say"
        return ""

    def _ambiguous_value(self, claim: str) -> str:
        """Why a bare value ('1.', '249 EUR.') cannot be checked, or ''. A value with no words to bind it is
        accepted only where the sources state it beside the question's terms and no other value of its kind."""
        stated = quantities(claim)
        if not stated or terms_of(claim) - frozenset().union(*(terms_of(claim[q.start:q.end]) for q in stated)):
            return ""
        for q in stated:
            tied = False
            for context in self.contexts:
                for start, end in split_sentences(context, semicolons=True):
                    sentence = context[start:end]
                    found = quantities(sentence)
                    if not any(compatible(f, q) for f in found):
                        continue
                    others = [f for f in found if f.value != q.value and (q.unit is None or f.unit == q.unit)]
                    if not others and self.focus.coverage(terms_of(sentence)) > 0:
                        tied = True
            if not tied:
                return f"a bare {q.surface.strip()} that the sources do not tie to the question alone"
        return ""

    @property
    def done(self) -> bool:
        """Whether more generated text is not worth waiting for: the model has answered and then written two
        sentences in a row that failed, or three failed before any answered."""
        return self._failed_in_a_row >= (2 if self.result.answered else 3)

    def _answers(self, kept: _Kept) -> bool:
        """Whether this sentence answers the question: it fills the slot and, with the passages that back it,
        holds the question's names and most of its focus."""
        present = set(terms_of(kept.text))
        earlier = self._pending[:-1] or self._released[-1:]
        if earlier and leans_back(strip_markers(kept.text)):
            # "It has a budget of 3.4 million EUR [1]." is about what the sentence before it named.
            present |= terms_of(earlier[-1].text) | frozenset().union(*map(terms_of, earlier[-1].evidence.values()))
        backing: list[str] = []
        for n, evidence in kept.evidence.items():
            # The headings of the passage that backs it, not of every passage of its document.
            heading = section(_part_holding(self.sources[n - 1], evidence))
            backing += [evidence, heading, self._framing(n, evidence)]
            present |= terms_of(evidence) | terms_of(heading)
        # The years the question states must come from the sources, not from the model's own sentence.
        return self.focus.answered_by(kept.text, present, evidence=backing)

    def _framing(self, number: int, evidence: str) -> str:
        """What frames a source's passage holding ``evidence``: its headings, lead-in and the sentence before it
        that states its year ("In 2025 …. Revenue grew to 5.1 million EUR.")."""
        if number not in self._passages:
            self._passages[number] = passages(self.sources[number - 1])
        probe = _probe(evidence)
        return next((p.around for p in self._passages[number] if probe and probe in p.text), "")

    def _release(self) -> str:
        text = join_sentences([k.text for k in self._released]) if self._released else ""
        self._released.extend(self._pending)
        self._pending = []
        full = join_sentences([k.text for k in self._released])
        return full[len(text):]

    def _finish(self) -> None:
        if not self.result.answered:
            for kept in self._pending:
                self.result.removed_claims.append(RemovedClaim(
                    claim=kept.text, reason="supported, but does not answer the question"))
            self._pending = []
        self.result.text = join_sentences([k.text for k in self._released])
        self.result.citations = self._citations()

    def _citations(self) -> list[Citation]:
        best: dict[int, tuple[float, str, bool]] = {}
        explicit = {n for k in self._released for n in k.numbers if n not in k.added}
        for kept in self._released:
            for n in kept.numbers:
                score = kept.scores[n]
                if n not in best or score > best[n][0]:
                    best[n] = (score, kept.evidence[n], n not in explicit)
        citations = []
        for n, (score, evidence, added) in sorted(best.items()):
            source = self.sources[n - 1]
            part = _part_holding(source, evidence)
            citations.append(Citation(
                number=n, chunk_id=part.chunk_id, document_id=part.document_id, source=part.source,
                page_number=part.meta.page_number, section_title=part.meta.section_title,
                snippet=shorten(evidence or part.text), support=round(score, 3), added=added, quote=evidence,
                sections=source.sections,
            ))
        return citations


def _key(text: str) -> str:
    return re.sub(r"\W+", "", text.lower())


def _probe(evidence: str) -> str:
    """The start of an evidence sentence, spaces normalised: enough to find the passage that holds it."""
    return " ".join(evidence.split())[:40]


def _part_holding(source: Source, evidence: str) -> Hit:
    probe = _probe(evidence)
    for part in source.ordered:
        if probe and probe in " ".join(part.text.split()):
            return part
    return source.best
