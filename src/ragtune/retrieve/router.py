"""Adaptive routing (CRAG-style): cheap signals pick hybrid, graph or decomposition, retry, or advise refusal."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragtune.llm.cached import CachedLLM
from ragtune.store.text import tokenize
from ragtune.text import detect_language
from ragtune.types import Hit

log = logging.getLogger(__name__)

ROUTES: tuple[str, ...] = ("hybrid", "graph", "decompose")

# A thing named by its relation to another: "the office of the team led by X", and by what it did or what was
# done to it: "the supplier that manufactures part X", "the engineer who fixed incident Y", "the batch ordered by Z".
_CHAIN_EN_PATTERN = (
    r"(?:of|for|with|by) the \w+ (?:of|led by|run by|owned by|managed by|headed by|that|who|which)|"
    r"(?:the \w+ )?(?:led|run|owned|managed|founded|headed|chaired) by|which .+ (?:does|did|do) the \w+ of|"
    r"the \w+ (?:that|who|which) (?!is\b|are\b|was\b|were\b)\w+\b.*?\b(?-i:[A-Z0-9])\w*|the (?:\w+ ){1,2}\w+ed by"
)
# 负责的项目的团队, 生产零件X的供应商由谁审计, 订购的集装箱批次由哪艘船运输.
_CHAIN_ZH_PATTERN = r"负责的.+的|领导的.+的|所在的.+的|的.+的.+(哪|什么|谁)|的.{1,6}(?:由谁|由哪|是谁|在哪)"
# Questions about two events, or a chain of relations, need evidence from more than one place.
_MULTI_EN = re.compile(
    # "between A and B" joins two events only as a span of time ("days between", "the interval between"); in a
    # claim it names a relation ("the association between homocysteine and stroke": SciFact), a single fact.
    r"\b(before|after|prior to|earlier than|later than|(?:days?|weeks?|months?|hours?|years?|time|interval|long)"
    r"(?: \w+){0,2} between .+ and|both|as well as|first .+ then|how long|time interval|in total|"
    rf"who (?:knows|knew)|{_CHAIN_EN_PATTERN})\b",
    re.IGNORECASE,
)
_MULTI_ZH = re.compile(rf"之前|之后|以前|以后|先.+再|并且|两者|之间|分别|{_CHAIN_ZH_PATTERN}")
_CHAIN_EN = re.compile(rf"\b(?:{_CHAIN_EN_PATTERN})\b", re.IGNORECASE)
_CHAIN_ZH = re.compile(_CHAIN_ZH_PATTERN)
# Questions about a whole collection ("main themes", "overall") are answered from community summaries.
_GLOBAL_EN = re.compile(r"\b(main (?:themes?|topics?|ideas?)|overall|in general|summari[sz]e|overview|"
                        r"what (?:kinds?|types?) of|across (?:all|the))\b", re.IGNORECASE)
_GLOBAL_ZH = re.compile(r"主要(?:内容|主题|话题)|总体|概括|总结|综述|整体")
# Where a two-part question splits: the clause before and after these words is a question of its own.
_SPLIT_EN = re.compile(r",?\s+\b(?:before|after|prior to|earlier than|later than|while|and then|and later)\b\s+",
                       re.IGNORECASE)
_BETWEEN_EN = re.compile(r"\bbetween\s+(.+?)\s+and\s+(.+?)(?:\s+(?:more|less|longer|shorter|than|within)\b.*)?[?.]?$",
                         re.IGNORECASE)
_SPLIT_ZH = re.compile(r"之前|之后|以前|以后|然后|并且|，再|以及")
_LEADING_AUX = re.compile(r"^(?:did|does|do|was|were|is|are|has|have|had)\s+", re.IGNORECASE)

Decomposer = Callable[[str], list[str]]

DECOMPOSE_PROMPT = {
    "en": "Split the question below into two or three simpler questions that can each be answered from one "
          "document. Reply with one question per line and nothing else.\n\nQuestion: {query}",
    "zh": "把下面的问题拆成两到三个更简单的问题，每个问题只需要一份文档就能回答。"
          "每行一个问题，不要写别的。\n\n问题：{query}",
}


@dataclass
class Route:
    """What the router chose for one question and why: the retrieval path taken (``decision``), whether it
    advises refusing because retrieval stayed weak after its retries (``refuse``), the signals it read, the
    sub-questions it searched, and each step it took."""

    decision: str
    refuse: bool = False
    reason: str = ""
    signals: dict[str, Any] = field(default_factory=dict)
    sub_queries: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "refuse": self.refuse, "reason": self.reason, "signals": self.signals,
                "sub_queries": self.sub_queries, "steps": self.steps}


class Router:
    """Reads cheap signals from the question and the first hybrid retrieval and decides:

    - ``graph`` when it asks about the whole collection, or chains relations or joins two events ("the office of
      the team led by X", "Did A happen before B?") and names something specific to walk from;
    - ``hybrid`` otherwise;
    - when retrieval is weak (the best dense score below the refusal gate and no chunk holding most of the
      question's terms), one retry: ``decompose`` (each part of a two-part question retrieved on its own and
      fused with the whole) or the graph;
    - and when it stays weak after that retry, advises refusing.

    Decomposition is a retry, not a first choice: on LiHua-World's two-event questions the whole question
    retrieves both events better than its parts (recall@10 0.79 against 0.72–0.76 fused with the parts).
    """

    def __init__(
        self, *, refusal_threshold: float = 0.0, dense_languages: Collection[str] = ("en", "zh"),
        lexical_gate: float = 0.5, decomposer: Decomposer | None = None,
        graph_available: bool = True,
    ) -> None:
        self.refusal_threshold = refusal_threshold
        self.dense_languages = frozenset(dense_languages)
        self.lexical_gate = lexical_gate
        self.decomposer = decomposer
        self.graph_available = graph_available

    # ------------------------------------------------------------------ signals

    def signals(self, query: str, hits: Sequence[Hit], *, linked_entities: int = 0, specific_entities: int = 0
                ) -> dict[str, Any]:
        """The evidence for a decision: question patterns, entities, and how well the hits cover the question.

        ``linked_entities``: how many named graph entities the question names; ``specific_entities``: how many
        of its entities (names or noun phrases) are rare enough to start a graph walk."""
        language = detect_language(query) or "en"
        terms = set(tokenize(query))
        # The best three hits: what the answer pipeline puts in front of the model.
        top = [set(tokenize(h.text)) for h in hits[:3]]
        covers = [len(terms & words) / len(terms) if terms else 0.0 for words in top]
        union = set().union(*top) if top else set()
        dense = [h.scores["dense"] for h in hits[:3] if "dense" in h.scores]
        glob = (_GLOBAL_ZH if language == "zh" else _GLOBAL_EN).search(query)
        best = max(covers, default=0.0)
        return {
            "language": language,
            "multi_hop_pattern": multi_hop_pattern(query),
            "global_pattern": glob.group(0) if glob else "",
            "linked_entities": linked_entities,
            "specific_entities": specific_entities,
            "best_dense": round(max(dense), 4) if dense else None,
            "lexical_support": round(best, 3),
            "union_support": round(len(terms & union) / len(terms), 3) if terms else 0.0,
            "hits": len(hits),
        }

    def weak(self, signals: dict[str, Any]) -> bool:
        """Retrieval found nothing convincing: no top hit holds most of the question's terms, and the best
        dense score (where the embedder understands the language) is below the gate."""
        if signals["lexical_support"] >= self.lexical_gate:
            return False
        dense = signals["best_dense"]
        if dense is not None and signals["language"] in self.dense_languages:
            return bool(dense < self.refusal_threshold)
        return signals["hits"] == 0 or signals["union_support"] < self.lexical_gate

    # ------------------------------------------------------------------ decisions

    def decide(self, signals: dict[str, Any], sub_queries: Sequence[str] = ()) -> tuple[str, str]:
        """The first path to try, and why (``sub_queries``: the parts of a two-part question, for the reason)."""
        if not self.graph_available:
            return "hybrid", "no graph in this knowledge base"
        if signals["global_pattern"]:
            return "graph", f"asks about the whole collection ('{signals['global_pattern']}')"
        if not signals["specific_entities"]:
            # The walk starts from specific entities only: without one it would add nothing but time.
            return "hybrid", "names nothing specific in the graph"
        if signals["multi_hop_pattern"]:
            joined = f"joins {len(sub_queries)} questions" if len(sub_queries) >= 2 else "chains relations"
            return "graph", f"{joined} ('{signals['multi_hop_pattern']}')"
        # Two signals that looked multi-hop are left out on purpose: several named entities no top hit mentions
        # all of, and terms spread over several hits. On LiHua-World and the two-hop fixture they never chose the
        # graph for a question it helped, and they sent 3 of 4 SciFact claims (entity-dense single-hop text) to
        # it: nDCG@10 0.685 instead of 0.710, at 2.5x hybrid's latency.
        return "hybrid", "no sign of a second hop"

    def retry(self, tried: str, sub_queries: Sequence[str], signals: dict[str, Any] | None = None) -> str | None:
        """The path to try when ``tried`` left retrieval weak (None: nothing else to try). The graph is tried
        only when the question names something specific in it (``signals``)."""
        if tried != "decompose" and len(sub_queries) >= 2:
            return "decompose"
        walkable = signals is None or signals.get("specific_entities", 1) > 0
        if tried != "graph" and self.graph_available and walkable:
            return "graph"
        return None

    def sub_queries(self, query: str) -> list[str]:
        """The parts of a two-part question: the decomposer's (an LLM) when it gives usable ones, else by rule."""
        if self.decomposer is not None:
            try:
                parts = usable_sub_queries(query, self.decomposer(query))
            except Exception as exc:  # an LLM failure must not fail retrieval
                log.info("decomposition failed (%s); splitting by rule", exc)
                parts = []
            if len(parts) >= 2:
                return parts
        return split_question(query)


def multi_hop_pattern(query: str) -> str:
    """The words that make a question multi-hop ("before", "led by", 之前, 负责的…的), or '' when none do."""
    found = (_MULTI_ZH if detect_language(query) == "zh" else _MULTI_EN).search(query)
    return found.group(0) if found else ""


def chains_relations(query: str) -> bool:
    """Whether a question reaches its answer through something it does not name ("the office of the team led by
    X", "the supplier that manufactures part X", 修复故障X的工程师的导师): a multi-hop pattern that chains relations,
    not one that joins two events ("Did A before B?", "between A and B")."""
    found = (_CHAIN_ZH if detect_language(query) == "zh" else _CHAIN_EN).search(query)
    return found is not None


def global_question(query: str) -> bool:
    """Whether a question asks about the whole collection ("What are the main themes?", "主要内容")."""
    return bool((_GLOBAL_ZH if detect_language(query) == "zh" else _GLOBAL_EN).search(query))


def split_question(query: str) -> list[str]:
    """Split a question that joins two by rule: "Did A before B?" -> [A, B]; "between A and B" -> [A, B];
    Chinese 之前/之后/然后/并且. Returns [] when it does not split."""
    text = query.strip()
    if detect_language(text) == "zh":
        parts = [p.strip(" ，,。？?") for p in _SPLIT_ZH.split(text)]
    else:
        text = re.sub(r"^(?:question|q)\s*:\s*", "", text, flags=re.IGNORECASE)
        between = _BETWEEN_EN.search(text)
        if between:
            parts = [between.group(1), between.group(2)]
        else:
            parts = [_LEADING_AUX.sub("", p).strip(" ,?.") for p in _SPLIT_EN.split(text)]
    parts = [p for p in parts if len(tokenize(p)) >= 2]
    return parts if len(parts) >= 2 else []


def usable_sub_queries(query: str, candidates: Sequence[str]) -> list[str]:
    """Sub-questions an LLM wrote, kept only when they look like parts of the question: not an echo of it,
    sharing terms with it, of sane length (a 135M model often repeats the question or rambles)."""
    terms = set(tokenize(query))
    kept: list[str] = []
    for raw in candidates:
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)]|sub-?questions?\s*\d*\s*:)\s*", "", raw, flags=re.IGNORECASE).strip()
        words = set(tokenize(line))
        if not words or line.lower() == query.strip().lower() or len(line) > 1.5 * len(query):
            continue
        if terms and words >= terms:
            continue  # the whole question again
        if not terms or len(words & terms) / len(words) < 0.4:
            continue  # about something else
        if line not in kept:
            kept.append(line)
    return kept[:3]


def llm_decomposer(client: CachedLLM) -> Decomposer:
    """Sub-questions written by the KB's (cached) LLM, one per line of its reply; the router keeps them only
    when :func:`usable_sub_queries` accepts them."""

    def decompose(query: str) -> list[str]:
        reply = client.generate(DECOMPOSE_PROMPT[detect_language(query) or "en"].format(query=query))
        return [line for line in reply.splitlines() if line.strip()]

    return decompose
