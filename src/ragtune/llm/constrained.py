"""Schema-constrained JSON from an in-process causal LM: ragtune writes the object's structure (braces, keys,
commas, quotes) and the model writes only the values, so the reply always parses and has the schema's shape.

This is Jsonformer's idea on a KV cache: strings run until the model closes the quote (or a token budget ends
them), numbers are picked from digit tokens only, booleans, enums and ``const`` by the model's own preference
among the allowed spellings, arrays grow while the model prefers "," to "]". A 135M model that cannot write valid
JSON from a prompt (it copies the schema back, or stops half-way) still fills these fields from its sources.

Supported schemas: objects with ``properties``, arrays with ``items``, strings, integers, numbers, booleans,
``null`` (alone or beside one other type), ``enum`` and ``const``. Anything else (``anyOf``, ``$ref``,
``patternProperties``...) is refused by :func:`constrainable`, and callers fall back to prompting.
Value constraints the structure cannot express (``minimum``, ``maxLength``, ``pattern``) are checked afterwards by
the schema validator, which retries with the error as for prompted JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ragtune.errors import ConfigError

_VALUE_KEYS = frozenset({
    "type", "properties", "required", "items", "enum", "const", "description", "title", "default", "examples",
    "additionalProperties", "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "format", "$schema", "$id", "multipleOf", "uniqueItems",
})
_KINDS = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
#: Items an array gets at most when the schema sets no maxItems (a small model tends to go on listing).
DEFAULT_MAX_ITEMS = 8


def _kind(schema: dict[str, Any]) -> str | None:
    """The one non-null type the value is written as ('enum' and 'const' first); None when there is none."""
    if "const" in schema:
        return "const"
    if "enum" in schema:
        return "enum"
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    if not kinds and isinstance(schema.get("properties"), dict):
        kinds = ["object"]
    if not kinds or any(k not in _KINDS for k in kinds):
        return None
    concrete = [k for k in kinds if k != "null"]
    if len(concrete) > 1:
        return None
    return concrete[0] if concrete else "null"


def constrainable(schema: Any) -> bool:
    """True when :class:`JsonFiller` can write every value ``schema`` allows the shape of."""
    if not isinstance(schema, dict) or set(schema) - _VALUE_KEYS:
        return False
    kind = _kind(schema)
    if kind == "object":
        props = schema.get("properties")
        return isinstance(props, dict) and bool(props) and all(constrainable(sub) for sub in props.values())
    if kind == "array":
        return constrainable(schema.get("items"))
    return kind is not None


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
_MARKUP = re.compile(r"<[^>\n]*>|\[\d+\]")


def stated_numbers(text: str) -> set[str]:
    """The numbers ``text`` states (thousands separators dropped), leaving out markup such as ``<source n="2">``
    and citation markers such as ``[2]``."""
    plain = _MARKUP.sub(" ", re.sub(r"(?<=\d),(?=\d{3}\b)", "", text))
    return {m.group().lstrip("-") for m in _NUMBER.finditer(plain)} | {m.group() for m in _NUMBER.finditer(plain)}


class JsonFiller:
    """Writes JSON for a schema with a transformers causal LM (greedy), one token at a time on its KV cache.

    The vocabulary tables are built once per model; each :meth:`fill` keeps its own cache, so concurrent calls
    do not share state."""

    def __init__(self, model: Any, tokenizer: Any, device: Any, *, max_string_tokens: int = 48) -> None:
        if max_string_tokens <= 0:
            raise ConfigError(f"max_string_tokens must be greater than 0, got {max_string_tokens}")
        import torch

        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_string_tokens = max_string_tokens
        self.pieces: list[str] = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        special = set(tokenizer.all_special_ids)
        self.ends = special | {i for i in (tokenizer.eos_token_id,) if i is not None}

        def ids(pattern: str) -> Any:
            rx = re.compile(pattern, re.DOTALL)
            found = [i for i, p in enumerate(self.pieces) if i not in special and rx.fullmatch(p)]
            return torch.tensor(found, dtype=torch.long, device=device)

        self.digits = ids(r"[0-9]+")
        self.minus = ids(r"-")
        self.dot = ids(r"\.")
        #: Tokens that would end a bare value: a comma, a closing brace or bracket, a line break.
        self.enders = ids(r"\s*[,}\]\n].*")

    def fill(self, prompt_ids: list[int], schema: dict[str, Any], *, grounding: str = "") -> str:
        """The JSON text for ``schema`` after the prompt (token ids ending where the reply starts).

        ``grounding`` is the text the values should come from (the prompt's messages): once a number's first
        digits are those of numbers it states, the number is completed as one of them (a greedy 135M model
        otherwise stops "20" at "2"); a number it does not state is written freely.

        Raises:
            ConfigError: the schema uses keywords this cannot follow (see :func:`constrainable`).
        """
        if not constrainable(schema):
            raise ConfigError("this JSON Schema uses keywords constrained decoding cannot follow "
                              "(anyOf, $ref, patternProperties...) — prompt for the JSON instead")
        writer = _Writer(self, stated_numbers(grounding))
        writer.feed(list(prompt_ids))
        return json.dumps(writer.value(schema), ensure_ascii=False)


class _Writer:
    """One reply being written: the KV cache and the logits of the next token."""

    def __init__(self, filler: JsonFiller, numbers: set[str]) -> None:
        self.f = filler
        self.numbers = numbers
        self.past: Any = None
        self.logits: Any = None

    def feed(self, ids: list[int]) -> None:
        import torch

        if not ids:
            return
        with torch.inference_mode():
            out = self.f.model(input_ids=torch.tensor([ids], device=self.f.device), cache=self.past,
                               use_cache=True, logits_to_keep=1)
        self.past = out.cache
        self.logits = out.logits[0, -1].float()

    def force(self, text: str) -> None:
        self.feed(self.f.tokenizer.encode(text, add_special_tokens=False))

    def best(self, allowed: Any) -> int:
        return int(allowed[int(self.logits[allowed].argmax())])

    def first_logit(self, text: str) -> float:
        return float(self.logits[self.f.tokenizer.encode(text, add_special_tokens=False)[0]])

    def value(self, schema: dict[str, Any]) -> Any:
        kind = _kind(schema)
        if kind == "object":
            return self.object(schema)
        if kind == "array":
            return self.array(schema)
        if kind == "string":
            return self.string(schema)
        if kind in ("integer", "number"):
            return self.number(kind == "integer")
        if kind == "boolean":
            truth = self.first_logit("true") >= self.first_logit("false")
            self.force("true" if truth else "false")
            return truth
        if kind in ("enum", "const"):
            return self.choice(schema["enum"] if kind == "enum" else [schema["const"]])
        self.force("null")
        return None

    def object(self, schema: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.force("{")
        for n, (name, sub) in enumerate(schema["properties"].items()):
            self.force(("\n  " if n == 0 else ",\n  ") + json.dumps(name, ensure_ascii=False) + ": ")
            out[name] = self.value(sub)
        self.force("\n}")
        return out

    def _start_logit(self, items: dict[str, Any]) -> float:
        """How much the model wants to begin an item of this schema (its first token's logit)."""
        kind = _kind(items)
        if kind in ("integer", "number"):
            return float(self.logits[self.f.digits].max())
        if kind == "boolean":
            return max(self.first_logit("true"), self.first_logit("false"))
        if kind in ("enum", "const"):
            options = items["enum"] if kind == "enum" else [items["const"]]
            return max(self.first_logit(json.dumps(o, ensure_ascii=False)) for o in options)
        return self.first_logit({"object": "{", "array": "[", "string": '"'}.get(kind or "", "null"))

    def array(self, schema: dict[str, Any]) -> list[Any]:
        items = schema["items"]
        least = int(schema.get("minItems", 0))
        most = int(schema.get("maxItems", max(DEFAULT_MAX_ITEMS, least)))
        out: list[Any] = []
        self.force("[")
        while len(out) < most:
            if len(out) >= least:
                go_on = self.first_logit(",") if out else self._start_logit(items)
                if self.first_logit("]") > go_on:
                    break
            if out:
                self.force(", ")
            out.append(self.value(items))
        self.force("]")
        return out

    def string(self, schema: dict[str, Any]) -> str:
        self.force('"')
        ids: list[int] = []
        tail = ""
        for _ in range(min(self.f.max_string_tokens, int(schema.get("maxLength", self.f.max_string_tokens)))):
            token = int(self.logits.argmax())
            if token in self.f.ends:
                break
            piece = self.f.pieces[token]
            if '"' in piece or "\n" in piece:  # the model closes the string (or the line)
                tail = re.split(r'["\n]', piece, maxsplit=1)[0]
                break
            ids.append(token)
            self.feed([token])
        self.force(tail + '"')
        return (self.f.tokenizer.decode(ids) + tail).strip()

    def number(self, integer: bool) -> int | float:
        import torch

        text = ""
        while len(text) < 18:
            digits = any(c.isdigit() for c in text)
            choices = [self.f.digits]
            if not text:
                choices.append(self.f.minus)
            if digits and not integer and "." not in text:
                choices.append(self.f.dot)
            if digits:
                choices.append(self.f.enders)
            allowed = torch.cat(choices)
            if digits:
                allowed = self._grounded(text, allowed)
            token = self.best(allowed)
            piece = self.f.pieces[token]
            if not re.fullmatch(r"[0-9.\-]+", piece):  # an ender: the number is complete
                break
            text += piece
            self.feed([token])
        text = text.rstrip(".")
        return int(text) if integer or "." not in text else float(text)

    def _grounded(self, text: str, allowed: Any) -> Any:
        """``allowed`` narrowed to the tokens that keep ``text`` on the way to a number the sources state (ending
        only where one is complete); unchanged when no stated number starts with ``text``."""
        import torch

        targets = [n for n in self.numbers if n.startswith(text)]
        if not targets:
            return allowed
        keep = [int(t) for t in allowed.tolist()
                if (self.f.pieces[int(t)].isdigit() or self.f.pieces[int(t)] == ".")
                and any(n.startswith(text + self.f.pieces[int(t)]) for n in targets)
                or text in targets and not re.fullmatch(r"[0-9.\-]+", self.f.pieces[int(t)])]
        return torch.tensor(keep, dtype=torch.long, device=allowed.device) if keep else allowed

    def choice(self, options: list[Any]) -> Any:
        """The option the model prefers, walked token by token among the spellings still possible."""
        import torch

        spelled = [self.f.tokenizer.encode(json.dumps(o, ensure_ascii=False), add_special_tokens=False)
                   for o in options]
        alive = list(range(len(options)))
        step = 0
        while True:
            done = [i for i in alive if len(spelled[i]) == step]
            longer = [i for i in alive if len(spelled[i]) > step]
            if not longer:
                return options[done[0]]
            allowed = torch.tensor(sorted({spelled[i][step] for i in longer}), dtype=torch.long,
                                   device=self.f.device)
            if done and float(self.logits[self.f.enders].max()) >= float(self.logits[allowed].max()):
                return options[done[0]]
            token = self.best(allowed)
            alive = [i for i in longer if spelled[i][step] == token]
            self.feed([token])
            step += 1
