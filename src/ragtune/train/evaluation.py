"""``ragtune model eval``: a trained model against its base on held-out chat examples."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ragtune.errors import ConfigError
from ragtune.evaluate.lm import Judge, exact_match, llm_judge, overlap_judge, perplexity, rouge_l, win_rate
from ragtune.llm.local import format_chat, resolve_model
from ragtune.train.data import encode_chat, load_examples
from ragtune.train.merge import base_of, load_trained
from ragtune.train.model import load_tokenizer

log = logging.getLogger(__name__)

JudgeName = Literal["overlap", "llm"]


def held_out_pairs(path: str | Path, limit: int = 0) -> list[tuple[list[dict[str, str]], str]]:
    """(prompt messages, reference answer) pairs: each conversation up to its last assistant turn."""
    pairs = []
    for example in load_examples(path, kind="sft"):
        if "messages" not in example:
            raise ConfigError(
                f"{path}: model eval needs chat examples (alpaca, messages, sharegpt, feedback), not plain text"
            )
        messages = example["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        pairs.append((messages[:last], messages[last]["content"]))
    return pairs[:limit] if limit else pairs


def generate_answers(
    model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], max_new_tokens: int,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers, each prompt rendered with the same template function as serving (``format_chat``)."""
    import torch

    answers = []
    for i, prompt in enumerate(prompts):
        inputs = tokenizer(format_chat(tokenizer, prompt), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        answers.append(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip())
        if progress:
            progress(i + 1)
    return answers


def _scores(model: Any, tokenizer: Any, pairs: list[tuple[list[dict[str, str]], str]], answers: list[str]) -> dict:
    sequences = [encode_chat(tokenizer, [*prompt, {"role": "assistant", "content": ref}]) for prompt, ref in pairs]
    return {
        "perplexity": perplexity(model, sequences),
        "rouge_l": statistics.fmean(rouge_l(a, ref) for a, (_, ref) in zip(answers, pairs, strict=True)),
        "exact_match": statistics.fmean(exact_match(a, ref) for a, (_, ref) in zip(answers, pairs, strict=True)),
    }


def evaluate_model(
    model_dir: str | Path,
    data: str | Path,
    *,
    base: str | None = None,
    judge: JudgeName = "overlap",
    judge_model: str | None = None,
    max_new_tokens: int = 64,
    limit: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Perplexity, ROUGE-L and exact match of the trained model and of its base, and the trained model's
    win rate against the base (each pair judged in both orders).

    ``model_dir`` is a run directory (adapter or full model) or a merged model directory. The default
    judge, 'overlap', prefers the answer with the higher ROUGE-L against the reference: deterministic and
    free, but blind to meaning. 'llm' asks ``judge_model`` (default: the base model, run locally) which answer
    is better; the bundled 135M model is a weak judge, so give a stronger local model for real comparisons.
    """
    from ragtune.llm.local import LocalLLM

    pairs = held_out_pairs(data, limit)
    base_name = base_of(model_dir, base)
    prompts = [prompt for prompt, _ in pairs]
    tuned_model, tuned_tokenizer = load_trained(model_dir, base)
    base_path = resolve_model(base_name)
    from transformers import AutoModelForCausalLM

    base_model = AutoModelForCausalLM.from_pretrained(base_path)
    base_tokenizer = load_tokenizer(base_path)
    results: dict[str, Any] = {
        "model": str(model_dir), "base_model": base_name, "data": str(data), "examples": len(pairs)
    }
    answers: dict[str, list[str]] = {}
    for name, model, tokenizer in (("tuned", tuned_model, tuned_tokenizer), ("base", base_model, base_tokenizer)):
        model.eval()
        report = (lambda done, n=name: progress(n, done, len(pairs))) if progress else None
        answers[name] = generate_answers(model, tokenizer, prompts, max_new_tokens, report)
        results[name] = _scores(model, tokenizer, pairs, answers[name])
    chosen: Judge
    if judge == "overlap":
        chosen = overlap_judge
    elif judge == "llm":
        chosen = llm_judge(LocalLLM(judge_model or base_name))
    else:
        raise ConfigError(f"judge {judge!r}: choose 'overlap' or 'llm'")
    questions = [prompt[-1]["content"] for prompt in prompts]
    references = [ref for _, ref in pairs]
    outcome = win_rate(chosen, questions, answers["tuned"], answers["base"], references)
    results["win_rate_vs_base"] = {**outcome.to_dict(), "judge": judge, "position_swap": True}
    results["samples"] = [
        {"question": q, "reference": r, "tuned": t, "base": b}
        for q, r, t, b in list(zip(questions, references, answers["tuned"], answers["base"], strict=True))[:5]
    ]
    return results

