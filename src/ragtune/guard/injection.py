"""Instructions hidden in documents: rules for EN and ZH plus a small bundled classifier, run on chunks at ingest.

A chunk is flagged when the rules add up to 1 (a strong pattern such as "ignore the previous instructions",
a chat-template token or a data-carrying link; or two weaker ones together, such as addressing the assistant and
dictating its reply), when the classifier's probability reaches the threshold (0.8 by default), or when a weaker
rule and a probability of 0.5 agree. Flagged chunks are kept and
marked (``ChunkMeta.injection`` holds the reason); the answer prompt fences every source as data either way.

The classifier is a logistic regression over hashed word and character n-grams (``injection_model.npz``, a few
hundred KB, trained by ``bench/guard_train_injection.py`` on generated attacks and clean text that are not the
evaluation fixtures); without the file, the rules alone decide.
"""

from __future__ import annotations

import functools
import logging
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL_FILE = Path(__file__).with_name("injection_model.npz")


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    weight: float


def _rule(name: str, pattern: str, weight: float = 1.0) -> Rule:
    return Rule(name, re.compile(pattern, re.IGNORECASE | re.DOTALL | re.MULTILINE), weight)


_TARGETS = (r"instructions?|prompts?|rules|directions?|guidelines|context|questions?|messages?|constraints|"
            r"guardrails|system|programming|directives?|orders|tasks?")
_OUTPUT = (r"(?:reply|respond|answer|output|say|print|write|return|state|type|tell|inform|ask|include|add|append|"
           r"insert|begin|start|end)")
_ASSISTANT = (r"(?:\bAI\b|assistant|language model|\bLLM\b|chat ?bot|ChatGPT|\bGPT\b|Claude|\bmodel\b|\bbot\b|"
              r"whoever (?:is )?read(?:s|ing) this)")
_ZH_MODEL = r"(?:AI|人工智能|助手|语言模型|大模型|机器人|模型)"
_ZH_OUTPUT = r"(?:回答|回复|输出|说|告诉|写|附上|加入|添加)"

RULES: tuple[Rule, ...] = (
    # English: overriding what the model was told, or taking over its task.
    _rule("override", r"\b(?:ignore|disregard|forget|override|bypass|skip|discard|drop)\b[^.\n]{0,40}?\b(?:previous|"
          r"prior|above|earlier|preceding|all|any|original|initial|other|your|system|user'?s?)\b[^.\n]{0,30}?\b(?:"
          + _TARGETS + r")\b"),
    _rule("ignore_question", r"\b(?:ignore|disregard|forget|don'?t answer|do not answer|never answer)\b[^.\n]{0,20}?"
          r"\b(?:(?:the|this|that|user'?s?|their|any)\s+)?(?:questions?|query|queries|requests?|prompts?)\b"),
    _rule("override_label", r"\b(?:system|admin|developer|security)?\s*override\s*[:：]|\bimportant new "
          r"instructions?\b", 0.6),
    _rule("instead", r"\binstead(?: of (?:answering|replying|responding))?\b[^.\n]{0,30}\b" + _OUTPUT + r"\b", 0.5),
    _rule("regardless", r"\b(?:regardless of|no matter|whatever is)\b[^.\n]{0,30}\b(?:question|asked|query|user)\b",
          0.6),
    # Giving the model a new identity.
    _rule("role", r"\byou are (?:now|no longer)\b|\bfrom now on,? you\b|\b(?:act|behave|roleplay) as\b[^.\n]{0,40}"
          r"\b(?:AI|assistant|model|bot|DAN|unrestricted|jailbroken|developer mode)\b|\bpretend (?:to be|you are)\b|"
          r"\bnew (?:instructions?|rules?|task|persona|role|system prompt)\b[^.\n:]{0,30}[:：]|\bdeveloper mode\b|"
          r"\bjailbr(?:eak|oken)\b"),
    _rule("role_soft", r"\byou are an?\b[^.\n]{0,30}\b(?:assistant|AI|bot|model)\b", 0.6),
    _rule("chat_template", r"<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>|\[/?INST\]|<</?SYS>>|"
          r"^\s*#{2,}\s*(?:system|instruction)s?\s*[:：]|\bSYSTEM\s*(?:PROMPT|MESSAGE|OVERRIDE)\s*[:：]|"
          r"^\s*(?:system|assistant)\s*[:：]\s*you\b"),
    # Talking to the model rather than to a human reader.
    _rule("addressing", _ASSISTANT + r"[^.\n]{0,60}?\b(?:must|should|shall|has to|needs? to|are (?:required|"
          r"instructed|told)|will now|always|never)\b[^.\n]{0,60}?\b" + _OUTPUT + r"\b", 0.6),
    _rule("note_to_model", r"(?:^|[.!?]\s+)(?:AI|assistant|model|LLM|chatbot)\s*[:：,]|\b(?:note|message|"
          r"instructions?|attention)\s*(?:to|for)?\s*(?:the |any |all )?(?:AI|assistants?|(?:language )?models?|"
          r"LLMs?|chatbots?)\b|\b(?:AI|language model|LLM)s? (?:reading|processing) this\b", 0.6),
    _rule("tell_user", r"\btell (?:the )?(?:user|customer|reader|them)\b", 0.5),
    _rule("dictated_reply", r"\b" + _OUTPUT + r"\b\s+(?:only\s+)?(?:with|exactly|just|verbatim)(?:\s+(?:exactly|only|"
          r"just|the (?:words?|text|phrase)))?\s*[:\"'“‘«(]|\b(?:reply|respond|answer)\s+(?:only|solely|"
          r"exclusively)\b|\bonly (?:reply|respond|answer|say|output)\b", 0.6),
    _rule("secrecy", r"\b(?:do not|don'?t|never)\s+(?:mention|reveal|tell|disclose|show)\b[^.\n]{0,30}\b(?:this|"
          r"these|instruction|the user|anyone)\b", 0.6),
    _rule("prompt_leak", r"\b(?:reveal|print|show|repeat|leak|output|list|dump)\b[^.\n]{0,25}\b(?:system prompt|your "
          r"(?:full )?instructions|hidden instructions|initial prompt|instructions you (?:were|have been) given|"
          r"instructions (?:above|you received))"),
    # Carrying data out, or sending the user somewhere.
    _rule("exfil_link", r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?&][^)\s]*=[^)]*\)|https?://[^\s)]*[?&][\w-]*=\s*"
          r"(?:\{|\[|<|%7B|\)|\s|$)"),
    _rule("exfil_send", r"\b(?:send|forward|post|upload|leak|exfiltrate|append|attach|include|encode)\b[^.\n]{0,40}"
          r"\b(?:conversation|chat history|chat log|the question|user'?s? (?:question|data|message|email|password|"
          r"input)|previous messages|api key|credentials|session)\b[^.\n]{0,40}\b(?:to|in|into)\b[^.\n]{0,30}"
          r"(?:https?://|url|link|server|address|endpoint)", 1.0),
    _rule("credentials", r"\b(?:send|give|provide|enter|share|type)\b[^.\n]{0,25}\b(?:password|passcode|PIN|"
          r"credentials|credit card|one-time code)\b[^.\n]{0,25}\b(?:to|at|via|on)\b", 0.6),
    _rule("link_push", r"\b(?:visit|open|click|go to|navigate to|tell (?:the )?user to (?:visit|click|open))\b"
          r"[^.\n]{0,20}https?://", 0.5),
    # Chinese.
    _rule("zh_override", r"(?:忽略|无视|忘记|忘掉|不要理会|不用理会|别管|跳过|抛开|覆盖)[^。\n]{0,8}?(?:之前|以上|"
          r"上面|前面|先前|此前|所有|全部|原来|原有|原先|系统|用户|你的)[^。\n]{0,6}?(?:指令|指示|说明|提示词?|规则|"
          r"要求|设定|约束|问题|命令|任务)|(?:忽略|无视|忘记|忘掉|不要理会|抛开)[^。\n]{0,6}?(?:指令|提示词|系统提示|"
          r"设定)"),
    _rule("zh_role", r"你现在是|从现在(?:开始|起)[，,]?你|现在你是|你不再是|扮演(?:一个|一名)?[^。\n]{0,10}"
          r"(?:AI|助手|机器人|模型)|假装(?:你是|自己是|成)|新的?(?:指令|规则|任务|角色|系统提示)[^。\n：:]{0,6}[:：]|"
          r"开发者模式|越狱"),
    _rule("zh_ignore_question", r"(?:不要|别|不必|无需|不用)(?:再)?(?:回答|理会|管)[^。\n]{0,6}(?:用户|他们|对方)?"
          r"的?(?:问题|提问)|无论(?:用户)?(?:问|提)(?:什么|任何)|不管用户问什么"),
    _rule("zh_dictated_reply", r"(?:只|仅|必须|一律|统一|直接)(?:需要)?(?:回答|回复|输出|答复|回应|说)[^。\n]{0,4}"
          r"[“\"「『:：]|(?:回答|回复|输出|答复|回应)(?:内容)?(?:必须|只能)?(?:为|是|成)\s*[“\"「『]", 0.6),
    _rule("zh_addressing", r"(?:" + _ZH_MODEL + r"|读到这段(?:文字|话)的)[^。\n]{0,10}?(?:必须|应该|应当|需要|请|"
          r"务必|一定要|一律)[^。\n]{0,20}?" + _ZH_OUTPUT, 0.6),
    _rule("zh_note_to_model", _ZH_MODEL + r"(?:请)?注意\s*[:：]|(?:给|致)(?:所有)?" + _ZH_MODEL + r"的?"
          r"(?:新)?(?:规则|指令|说明|提示|话)?\s*[:：]", 0.6),
    _rule("zh_tell_user", r"(?:告诉|通知|提醒)(?:用户|他们|对方|客户)", 0.5),
    _rule("zh_secrecy", r"(?:不要|别|不得|禁止)(?:向用户)?(?:提及|透露|告诉|泄露|显示)[^。\n]{0,10}(?:这条|此|"
          r"这些|本)?(?:指令|说明|提示|内容)", 0.6),
    _rule("zh_prompt_leak", r"(?:泄露|输出|打印|重复|显示|列出)[^。\n]{0,15}(?:系统提示|系统指令|提示词|隐藏指令|"
          r"收到的指令|给你的指令)"),
    _rule("zh_exfil", r"(?:把|将)[^。\n]{0,12}(?:对话|聊天记录|用户的?问题|问题|用户数据|密码|密钥|历史)[^。\n]{0,12}"
          r"(?:发送|发到|上传|附加|拼接|提交|转发)[^。\n]{0,20}(?:https?://|网址|链接|服务器|地址)"),
    _rule("zh_credentials", r"(?:密码|验证码|银行卡号|身份证号|口令)[^。\n]{0,10}(?:发送|发到|提供|告诉|输入)|"
          r"(?:发送|提供|输入)[^。\n]{0,6}(?:密码|验证码|口令)", 0.6),
    _rule("zh_instead", r"(?:而是|改为|转而)[^。\n]{0,10}(?:回答|回复|输出|说|写|翻译|列出)", 0.5),
)


@dataclass(frozen=True)
class Verdict:
    """The scanner's finding on one text: flagged or not, why (rule names or the classifier), the rule score
    (weights added up, 1 flags) and the classifier's probability (None without a model)."""

    flagged: bool
    reason: str | None
    rule_score: float
    probability: float | None
    rules: tuple[str, ...] = ()


class HashedTextClassifier:
    """Logistic regression over hashed token 1–3-grams (words, and Han characters one by one)."""

    def __init__(self, weights: np.ndarray, bias: float) -> None:
        self.weights = weights.astype(np.float32)
        self.bias = float(bias)
        self.buckets = int(weights.shape[0])

    @classmethod
    def load(cls, path: Path) -> HashedTextClassifier:
        with np.load(path) as data:
            return cls(data["weights"], float(data["bias"]))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, weights=self.weights.astype(np.float16), bias=np.float32(self.bias))

    def features(self, text: str) -> dict[int, float]:
        return hashed_features(text, self.buckets)

    def probability(self, text: str) -> float:
        feats = self.features(text)
        if not feats:
            return 0.0
        idx = np.fromiter(feats.keys(), dtype=np.int64, count=len(feats))
        val = np.fromiter(feats.values(), dtype=np.float32, count=len(feats))
        z = float(self.weights[idx] @ val) + self.bias
        return float(1.0 / (1.0 + np.exp(-z)))


_WORDS = re.compile(r"[a-z0-9']+|[\u3400-\u9fff]")


def hashed_features(text: str, buckets: int) -> dict[int, float]:
    """L2-normalised counts of hashed token 1–3-grams of ``text``: lower-cased words, and each Han character as a
    token of its own (so Chinese gets character n-grams without a segmenter)."""
    tokens = _WORDS.findall(" ".join(text.lower().split())[:4000])
    counts: dict[int, float] = {}
    for n in (1, 2, 3):
        for i in range(len(tokens) - n + 1):
            key = zlib.crc32(" ".join(tokens[i : i + n]).encode("utf-8")) % buckets
            counts[key] = counts.get(key, 0.0) + 1.0
    norm = float(np.sqrt(sum(v * v for v in counts.values()))) or 1.0
    return {k: v / norm for k, v in counts.items()}


@functools.lru_cache(maxsize=1)
def bundled_classifier() -> HashedTextClassifier | None:
    """The classifier shipped with ragtune, loaded once (None when the file is absent)."""
    if not MODEL_FILE.is_file():
        log.warning("injection classifier %s is missing; scanning with the rules only", MODEL_FILE.name)
        return None
    return HashedTextClassifier.load(MODEL_FILE)


def rule_hits(text: str) -> tuple[float, tuple[str, ...]]:
    """The rules that match ``text`` and their weights added up."""
    names = tuple(rule.name for rule in RULES if rule.pattern.search(text))
    weights = {rule.name: rule.weight for rule in RULES}
    return sum(weights[n] for n in names), names


class InjectionScanner:
    """Flags text that gives the model instructions: rules, then the classifier (``threshold`` on its
    probability; ``classifier=False`` scans with the rules only)."""

    def __init__(self, threshold: float = 0.8, classifier: HashedTextClassifier | bool | None = True) -> None:
        if not 0 < threshold < 1:
            from ragtune.errors import ConfigError

            raise ConfigError("injection_threshold must be between 0 and 1.")
        self.threshold = threshold
        if classifier is True or classifier is None:
            self.classifier = bundled_classifier()
        elif classifier is False:
            self.classifier = None
        else:
            self.classifier = classifier

    def scan(self, text: str) -> Verdict:
        score, names = rule_hits(text)
        probability = self.classifier.probability(text) if self.classifier is not None else None
        if score >= 1.0:
            return Verdict(True, "rules: " + ", ".join(names), round(score, 3), probability, names)
        if probability is not None and (probability >= self.threshold or (score >= 0.5 and probability >= 0.5)):
            # A weak rule and a leaning classifier agree, or the classifier alone is confident.
            reason = f"classifier: {probability:.2f}" + (f" (rules: {', '.join(names)})" if names else "")
            return Verdict(True, reason, round(score, 3), probability, names)
        return Verdict(False, None, round(score, 3), probability, names)

    def scan_many(self, texts: Sequence[str]) -> list[Verdict]:
        return [self.scan(t) for t in texts]


# ---------------------------------------------------------------------------------------------- answers

_FENCE_TAG = re.compile(r"<(/?)\s*(sources?)\b", re.IGNORECASE)


def fence(text: str) -> str:
    """Source text made safe to place between the prompt's ``<source>`` / ``<sources>`` fences: a tag of that
    name inside a document (``</sources>`` followed by orders) is defanged so it cannot close the fence early."""
    return _FENCE_TAG.sub(lambda m: f"<{m.group(1)}\u200b{m.group(2)}", text)


_URL_RE = re.compile(r"https?://[^\s)\]>\"'“”]+|\bwww\.[^\s)\]>\"'“”]+", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_IMAGE_RE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_QUOTED_RE = re.compile(r"[\"“'‘「『]([^\"”'’」』\n]{4,80})[\"”'’」』]")
# Latin sentence ends need a space after them (so e-mail addresses, links and decimals stay whole); CJK ones do not.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*|\n+")


def _grams(text: str) -> set[tuple[str, ...]]:
    """Word trigrams of Latin-script text and 4-character runs of Chinese text, lower-cased."""
    tokens = _WORDS.findall(text.lower())
    out: set[tuple[str, ...]] = set()
    han = [t for t in tokens if len(t) == 1 and "\u3400" <= t <= "\u9fff"]
    words = [t for t in tokens if not (len(t) == 1 and "\u3400" <= t <= "\u9fff")]
    for seq, n in ((words, 3), (han, 4)):
        out.update(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))
    return out


_STOP = frozenset((
    "the", "a", "an", "of", "to", "and", "or", "in", "on", "for", "with", "is", "are", "be", "this", "that", "it",
    "you", "your", "any", "all",
))


def followed_injection(answer: str, sources: Sequence[str], question: str = "",
                       flagged: Sequence[bool] | None = None) -> str | None:
    """Why an answer looks like it obeyed an instruction planted in a source instead of answering the question
    (None when it does not): it shows an image or a link with a query string (the usual way to carry data out),
    reads as an instruction itself, or repeats words that only an instruction in a source holds (a dictated reply,
    a link, an address, a false claim). ``flagged`` marks the sources the scanner flagged at ingest (default: all);
    in the others only sentences a strong rule flags on its own count as instructions."""
    if _IMAGE_RE.search(answer):
        return "the answer embeds an image, which would load a URL"
    score, names = rule_hits(answer)
    if score >= 1.0:
        return f"the answer itself reads as an instruction ({', '.join(names)})"
    asked = question.lower()
    for url in _URL_RE.findall(answer):
        if "?" in url and "=" in url and url.lower() not in asked:
            return f"the answer carries a link with parameters ({url[:60]})"
    marks = list(flagged) if flagged is not None else [True] * len(sources)
    instructions: list[str] = []
    plain: list[str] = []
    for source, mark in zip(sources, marks, strict=False):
        for sentence in _SENTENCE_END.split(source):
            if sentence.strip():
                # In a flagged source any sentence a rule touches; elsewhere only one a strong rule flags alone.
                hit = rule_hits(sentence)[0]
                (instructions if (mark and hit > 0) or hit >= 1.0 else plain).append(sentence)
    if not instructions:
        return None
    planted = " ".join(instructions)
    lowered = answer.lower()
    for item in [*_URL_RE.findall(planted), *_EMAIL_RE.findall(planted)]:
        item = item.lower().rstrip(".,;。")
        if item in lowered and item not in asked:
            return f"the answer repeats a link or address that an instruction in a source dictated ({item[:60]})"
    known = _grams(" ".join(plain)) | _grams(question)
    dictated = {g for g in _grams(planted) - known if not set(g) <= _STOP}
    repeated = _grams(answer) & dictated
    if repeated:
        sample = " ".join(sorted(repeated)[0])
        return f"the answer repeats words that only an instruction planted in a source holds (\"{sample}\")"
    return None
