"""Training data: alpaca, messages/sharegpt, plain text, preference pairs, KTO, ragtune feedback and
LLaMA-Factory ``dataset_info.json``, read into one shape and tokenized through the model's chat template.

Every SFT row becomes ``{"messages": [...]}`` (or ``{"text": ...}`` for continued pre-training), every
preference row ``{"prompt": [...], "chosen": [...], "rejected": [...]}`` and every KTO row
``{"prompt": [...], "completion": [...], "label": bool}`` — TRL's conversational formats.

ragtune's feedback export is JSONL, one rated answer per line::

    {"question": "...", "answer": "...", "rating": "up" | "down",
     "corrected_answer": "..." (optional), "contexts": ["source text", ...] (optional)}

With ``contexts`` the prompt is rebuilt exactly as the RAG pipeline asks (numbered sources), so the
model is tuned on the prompts it will be served. For SFT, an "up" answer and any corrected answer are
targets; for DPO a corrected "down" row gives chosen = correction, rejected = answer; for KTO "up" and
corrections are desirable, "down" answers undesirable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.jsonl import read_jsonl
from ragtune.llm.local import GENERATION_MARKER, chat_template, render_chat

log = logging.getLogger(__name__)

SFT_FORMATS = ("alpaca", "messages", "sharegpt", "text", "feedback", "llamafactory")
PREFERENCE_FORMATS = ("preference", "feedback", "llamafactory")
KTO_FORMATS = ("kto", "feedback")
IGNORE_INDEX = -100
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "model": "assistant"}


class DataError(ConfigError):
    """Training data is missing, malformed or of the wrong kind for the method (names the file and row)."""


# ---------------------------------------------------------------- reading


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl, .json (a list of objects) or .txt file (one row per blank-line-separated paragraph)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"training data {file}: no such file — set data.path (e.g. --set data.path=train.jsonl)")
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".txt":
        return [{"text": block.strip()} for block in text.split("\n\n") if block.strip()]
    if file.suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}: not valid JSON ({exc})") from exc
        if not isinstance(rows, list):
            raise DataError(f"{file}: a .json data file must hold a list of objects — or use .jsonl")
    else:
        rows = [row for _, row in read_jsonl(file, error=DataError)]
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(f"{file} row {number}: expected a JSON object, got {type(row).__name__}")
    if not rows:
        raise DataError(f"{file}: no examples in it")
    return rows


def detect_format(row: dict[str, Any]) -> str:
    """The format of a row from its keys."""
    keys = set(row)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if {"completion", "label"} <= keys:
        return "kto"
    if {"question", "rating"} <= keys:
        return "feedback"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "text" in keys:
        return "text"
    raise DataError(
        f"cannot tell the data format from the keys {sorted(keys)} — set data.format to one of alpaca, messages, "
        "sharegpt, text, preference, kto, feedback"
    )


def data_hash(path: str | Path) -> str:
    """SHA-256 of the data file, recorded in run.json so a run names exactly what it learned from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_examples(
    path: str | Path, *, kind: str, fmt: str = "auto", dataset: str = "", system_prompt: str = ""
) -> list[dict[str, Any]]:
    """Read ``path`` and convert it for ``kind`` ('sft', 'preference' or 'kto')."""
    file = Path(path)
    if fmt == "llamafactory" or (fmt == "auto" and file.name == "dataset_info.json"):
        return _load_llamafactory(file, dataset, kind=kind, system_prompt=system_prompt)
    rows = read_rows(file)
    fmt = detect_format(rows[0]) if fmt == "auto" else fmt
    allowed = {"sft": SFT_FORMATS, "preference": PREFERENCE_FORMATS, "kto": KTO_FORMATS}[kind]
    if fmt not in allowed:
        raise DataError(
            f"{file}: {fmt} data cannot train {_KIND_NAMES[kind]} — it needs {' or '.join(allowed)} rows"
        )
    examples: list[dict[str, Any]] = []
    for number, row in enumerate(rows, 1):
        try:
            examples.extend(_convert(row, fmt, kind, system_prompt))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{file} row {number}: not a valid {fmt} row ({type(exc).__name__}: {exc})") from exc
    if not examples:
        raise DataError(f"{file}: none of its {len(rows)} rows gives a {_KIND_NAMES[kind]} example")
    return examples


_KIND_NAMES = {"sft": "SFT", "preference": "DPO/ORPO (preference)", "kto": "KTO"}


def _convert(row: dict[str, Any], fmt: str, kind: str, system_prompt: str) -> list[dict[str, Any]]:
    if fmt == "feedback":
        return _from_feedback(row, kind, system_prompt)
    if kind == "preference":
        prompt = _with_system(_as_prompt(row["prompt"]), system_prompt)
        return [{"prompt": prompt, "chosen": _as_reply(row["chosen"]), "rejected": _as_reply(row["rejected"])}]
    if kind == "kto":
        label = row["label"]
        if not isinstance(label, bool):
            raise ValueError(f"label must be true or false, got {label!r}")
        prompt = _with_system(_as_prompt(row["prompt"]), system_prompt)
        return [{"prompt": prompt, "completion": _as_reply(row["completion"]), "label": label}]
    if fmt == "text":
        text = row["text"]
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        return [{"text": text}]
    if fmt == "alpaca":
        messages = _alpaca_messages(row)
    elif fmt == "messages":
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    else:
        messages = [{"role": _SHAREGPT_ROLES[m["from"]], "content": m["value"]} for m in row["conversations"]]
        if row.get("system"):
            messages.insert(0, {"role": "system", "content": row["system"]})
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("the conversation has no assistant turn to learn from")
    return [{"messages": _with_system(messages, system_prompt)}]


def _alpaca_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    if row.get("system"):
        messages.append({"role": "system", "content": row["system"]})
    for turn in row.get("history") or []:
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    user = row["instruction"] if not row.get("input") else f"{row['instruction']}\n\n{row['input']}"
    return [*messages, {"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]


def _as_prompt(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _as_reply(value: Any) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if isinstance(value, dict):
        return [{"role": "assistant", "content": value["content"]}]
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _with_system(messages: list[dict[str, str]], system_prompt: str) -> list[dict[str, str]]:
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def feedback_prompt(question: str, contexts: Sequence[str] | None, system_prompt: str = "") -> list[dict[str, str]]:
    """The prompt a feedback row was answered from: the RAG answer prompt when it carries its sources."""
    if not contexts:
        return _with_system([{"role": "user", "content": question}], system_prompt)
    from ragtune.rag.prompts import REFUSAL, PromptTemplates
    from ragtune.text import detect_language

    templates = PromptTemplates.default()
    lang = detect_language(question) or "en"
    lang = lang if lang in templates.system else "en"
    sources = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(contexts, 1))
    return [
        {"role": "system", "content": system_prompt or templates.system[lang].format(refusal=REFUSAL[lang])},
        {"role": "user", "content": templates.user[lang].format(sources=sources, question=question)},
    ]


def _from_feedback(row: dict[str, Any], kind: str, system_prompt: str) -> list[dict[str, Any]]:
    rating = row["rating"]
    if rating not in ("up", "down"):
        raise ValueError(f"rating must be 'up' or 'down', got {rating!r}")
    prompt = feedback_prompt(row["question"], row.get("contexts"), system_prompt)
    answer, corrected = row.get("answer", ""), row.get("corrected_answer") or ""
    good = corrected or (answer if rating == "up" else "")
    if kind == "sft":
        return [{"messages": [*prompt, {"role": "assistant", "content": good}]}] if good else []
    if kind == "preference":
        if rating == "down" and corrected and answer:
            return [{"prompt": prompt, "chosen": _as_reply(corrected), "rejected": _as_reply(answer)}]
        return []
    rows = []
    if answer:
        rows.append({"prompt": prompt, "completion": _as_reply(answer), "label": rating == "up"})
    if corrected:
        rows.append({"prompt": prompt, "completion": _as_reply(corrected), "label": True})
    return rows


def _load_llamafactory(info_path: Path, dataset: str, *, kind: str, system_prompt: str) -> list[dict[str, Any]]:
    """A dataset described in LLaMA-Factory's dataset_info.json (alpaca or sharegpt formatting, ranking or not)."""
    if not info_path.is_file():
        raise DataError(f"{info_path}: no such file — give the path of a LLaMA-Factory dataset_info.json")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{info_path}: not valid JSON ({exc})") from exc
    if not isinstance(info, dict) or not info:
        raise DataError(f"{info_path}: dataset_info.json must map dataset names to descriptions")
    if not dataset:
        if len(info) > 1:
            raise DataError(f"{info_path} describes {', '.join(info)} — choose one with --set data.dataset=NAME")
        dataset = next(iter(info))
    if dataset not in info:
        raise DataError(f"{info_path}: no dataset {dataset!r} — it describes {', '.join(info)}")
    spec = info[dataset]
    if "file_name" not in spec:
        raise DataError(f"{info_path}: dataset {dataset!r} has no file_name (hub datasets are not read offline)")
    formatting = spec.get("formatting", "alpaca")
    ranking = bool(spec.get("ranking", False))
    if ranking != (kind == "preference"):
        need = "a ranking dataset (ranking: true)" if kind == "preference" else "a dataset without ranking"
        raise DataError(f"{info_path}: dataset {dataset!r} cannot train {_KIND_NAMES[kind]} — it needs {need}")
    columns = spec.get("columns", {})
    tags = spec.get("tags", {})
    rows = read_rows(info_path.parent / spec["file_name"])
    examples: list[dict[str, Any]] = []
    for number, row in enumerate(rows, 1):
        try:
            if formatting == "alpaca":
                examples.append(_lf_alpaca(row, columns, ranking))
            elif formatting == "sharegpt":
                examples.append(_lf_sharegpt(row, columns, tags, ranking))
            else:
                raise DataError(f"{info_path}: formatting {formatting!r} is not supported (alpaca, sharegpt)")
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{spec['file_name']} row {number}: does not match dataset_info.json ({exc})") from exc
    for example in examples:
        key = "messages" if "messages" in example else "prompt"
        example[key] = _with_system(example[key], system_prompt)
    return examples


def _lf_alpaca(row: dict[str, Any], columns: dict[str, str], ranking: bool) -> dict[str, Any]:
    defaults = {
        "prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"
    }
    get = {name: columns.get(name, column) for name, column in defaults.items()}
    base = {
        "instruction": row[get["prompt"]],
        "input": row.get(get["query"], ""),
        "output": "",
        "system": row.get(get["system"], ""),
        "history": row.get(get["history"]) or [],
    }
    if ranking:
        messages = _alpaca_messages(base)[:-1]
        chosen, rejected = columns.get("chosen", "chosen"), columns.get("rejected", "rejected")
        return {"prompt": messages, "chosen": _as_reply(row[chosen]), "rejected": _as_reply(row[rejected])}
    base["output"] = row[get["response"]]
    return {"messages": _alpaca_messages(base)}


def _lf_sharegpt(row: dict[str, Any], columns: dict[str, str], tags: dict[str, str], ranking: bool) -> dict[str, Any]:
    role_key, content_key = tags.get("role_tag", "from"), tags.get("content_tag", "value")
    roles = {
        tags.get("user_tag", "human"): "user", tags.get("assistant_tag", "gpt"): "assistant",
        tags.get("system_tag", "system"): "system", "user": "user", "assistant": "assistant",
    }
    turns = row[columns.get("messages", "conversations")]
    messages = [{"role": roles[t[role_key]], "content": t[content_key]} for t in turns]
    system = row.get(columns.get("system", "system"))
    if system:
        messages.insert(0, {"role": "system", "content": system})
    if ranking:
        chosen, rejected = row[columns.get("chosen", "chosen")], row[columns.get("rejected", "rejected")]
        return {"prompt": messages, "chosen": _as_reply(chosen[content_key] if isinstance(chosen, dict) else chosen),
                "rejected": _as_reply(rejected[content_key] if isinstance(rejected, dict) else rejected)}
    return {"messages": messages}


# ---------------------------------------------------------------- tokenizing


def encode_chat(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and its labels: the ids on assistant tokens, -100 elsewhere.

    The conversation is rendered with :func:`ragtune.llm.local.chat_template`, the function inference
    uses. A template with ``{% generation %}`` markers gives the assistant mask directly; for one without,
    the mask comes from rendering each prefix (the prompt before a reply and the prompt plus the reply)
    and taking the difference, which needs a template whose renders of prefixes are prefixes.
    """
    template = chat_template(tokenizer)
    if GENERATION_MARKER in template:
        out = tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids = list(out["input_ids"])
        mask = list(out["assistant_masks"])
        return ids, [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
    return _encode_by_prefixes(tokenizer, messages)


def _encode_by_prefixes(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    full = render_chat(tokenizer, messages, add_generation_prompt=False)
    ids: list[int] = tokenizer(full, add_special_tokens=False)["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_chat(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        through = render_chat(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not full.startswith(through) or not through.startswith(before):
            raise DataError(
                f"the chat template of {getattr(tokenizer, 'name_or_path', 'this model')!r} does not render "
                "conversations prefix by prefix, so assistant tokens cannot be found — train on prompt/completion "
                "or text data, or give the model a template with {% generation %} markers"
            )
        start = len(tokenizer(before, add_special_tokens=False)["input_ids"])
        end = len(tokenizer(through.rstrip(), add_special_tokens=False)["input_ids"])
        labels[start:end] = ids[start:end]
    return ids, labels


def encode_text(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """Plain text for continued pre-training: every token is learned, and an end-of-text token closes it."""
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids, list(ids)


def tokenize_sft(
    tokenizer: Any, examples: Iterable[dict[str, Any]], max_seq_len: int
) -> tuple[list[dict[str, list[int]]], dict[str, float]]:
    """``input_ids`` and ``labels`` per example, truncated to ``max_seq_len``, and the length statistics
    (logged, with a truncation warning, before training starts)."""
    encoded = [
        encode_chat(tokenizer, ex["messages"]) if "messages" in ex else encode_text(tokenizer, ex["text"])
        for ex in examples
    ]
    stats = report_lengths([len(ids) for ids, _ in encoded], max_seq_len)
    rows = []
    for ids, labels in encoded:
        ids, labels = ids[:max_seq_len], labels[:max_seq_len]
        if any(label != IGNORE_INDEX for label in labels):
            rows.append({"input_ids": ids, "labels": labels})
    if not rows:
        raise DataError(
            f"every example lost all its answer tokens to truncation at max_seq_len={max_seq_len} — "
            "raise data.max_seq_len"
        )
    return rows, stats


def report_lengths(lengths: Sequence[int], max_seq_len: int) -> dict[str, float]:
    """Token-length statistics, logged before training, with a warning when examples will be truncated."""
    ordered = sorted(lengths)
    stats = {
        "examples": float(len(ordered)),
        "min": float(ordered[0]),
        "mean": round(statistics.fmean(ordered), 1),
        "p50": float(ordered[len(ordered) // 2]),
        "p95": float(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]),
        "max": float(ordered[-1]),
        "truncated": float(sum(1 for n in ordered if n > max_seq_len)),
    }
    log.info(
        "token lengths of %d examples: min %d, mean %.0f, p50 %d, p95 %d, max %d",
        len(ordered), stats["min"], stats["mean"], stats["p50"], stats["p95"], stats["max"],
    )
    if stats["truncated"]:
        log.warning(
            "%d of %d examples are longer than max_seq_len=%d tokens and will be truncated (longest %d) — "
            "raise data.max_seq_len if their endings matter",
            stats["truncated"], len(ordered), max_seq_len, stats["max"],
        )
    return stats


def split_eval(examples: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """A seeded random hold-out of ``fraction`` of the examples (at least one when fraction > 0 and 2+ examples)."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    import random

    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = max(1, round(fraction * len(examples)))
    chosen = set(order[:held])
    return [e for i, e in enumerate(examples) if i not in chosen], [e for i, e in enumerate(examples) if i in chosen]
