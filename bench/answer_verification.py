"""Verification of planted errors (issue 22, must-show 1) and the claim judge's discrimination, without a model.

    python bench/answer_verification.py     # writes bench/results/answer_verification.json

1. tests/fixtures/answers/planted.json (EN + ZH answers to the fixture questions: correct ones and ones with a
   planted wrong number, swapped entity, uncited invented sentence, prompt echo or non-answer): the share of planted
   errors verification removes (the planted sentence is not in the verified answer, or the answer is refused) and
   the share of correct claims it keeps — the full answer verification (claims, echoes, the answer answering).
2. The judge alone, claim by claim: ROC AUC of its score for supported claims against planted ones, on the fixture
   claims (what the judge was developed on) and on bench/gold/planted_lihua.json (LiHua-World chat logs, written
   before the judge was first run on them; the judge was then fixed for chat logs, see the JSON's note).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _common import LIHUA_DIR, RESULTS_DIR, loadavg, write_json

from ragtune.rag.claims import LexicalJudge, split_claims, strip_markers
from ragtune.rag.question import analyse_question
from ragtune.rag.sources import Source
from ragtune.rag.verify import verify_answer
from ragtune.types import ChunkMeta, Hit

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "answers"
LIHUA_DOCS = LIHUA_DIR / "docs"


def auc(positives: list[float], negatives: list[float]) -> float:
    """Probability that a supported claim scores above a planted one (ties count half)."""
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in positives for n in negatives]
    return round(sum(pairs) / len(pairs), 4) if pairs else float("nan")


def source(number: int, name: str) -> Source:
    text = (FIXTURES / "docs" / name).read_text(encoding="utf-8")
    return Source(number, [Hit(chunk_id=name, document_id=name, source=name, text=text, score=1.0, meta=ChunkMeta())])


def planted_answers(judge: LexicalJudge) -> dict[str, Any]:
    items = json.loads((FIXTURES / "planted.json").read_text(encoding="utf-8"))["items"]
    caught: Counter[str] = Counter()
    planted: Counter[str] = Counter()
    kept = correct = 0
    by_lang: dict[str, Counter[str]] = {}
    misses, losses = [], []
    for item in items:
        lang = item.get("lang", "en")
        sources = [source(i, name) for i, name in enumerate(item["contexts"], 1)]
        result = verify_answer(item["answer"], analyse_question(item["q"]), sources, judge, language=lang)
        text = strip_markers(result.text) if result.answered else ""
        stats = by_lang.setdefault(lang, Counter())
        if item["kind"] == "correct":
            claims = [strip_markers(c) for c in split_claims(item["answer"])]
            found = sum(c in text for c in claims)
            kept, correct = kept + found, correct + len(claims)
            stats["claims_kept"] += found
            stats["claims"] += len(claims)
            if found < len(claims):
                losses.append({"answer": item["answer"], "removed": [r.model_dump() for r in result.removed_claims]})
        else:
            planted[item["kind"]] += 1
            stats["planted"] += 1
            if strip_markers(item["planted"]) in text:
                misses.append({"kind": item["kind"], "answer": item["answer"], "verified": result.text})
            else:
                caught[item["kind"]] += 1
                stats["caught"] += 1
    return {
        "planted": sum(planted.values()), "caught": sum(caught.values()),
        "caught_rate": round(sum(caught.values()) / sum(planted.values()), 4),
        "correct_claims": correct, "kept": kept, "kept_rate": round(kept / correct, 4),
        "by_kind": {k: {"planted": planted[k], "caught": caught[k]} for k in sorted(planted)},
        "by_language": {k: dict(v) for k, v in sorted(by_lang.items())}, "missed": misses, "lost": losses,
    }


def judge_auc(judge: LexicalJudge) -> dict[str, Any]:
    items = json.loads((FIXTURES / "planted.json").read_text(encoding="utf-8"))["items"]
    good: list[float] = []
    bad: list[float] = []
    for item in items:
        contexts = [(FIXTURES / "docs" / name).read_text(encoding="utf-8") for name in item["contexts"]]
        wrong = strip_markers(item["planted"]) if item["kind"] in ("number", "entity", "invented") else None
        claims = split_claims(item["answer"])
        for check in judge.check(claims, contexts, question=item["q"]):
            (bad if wrong is not None and strip_markers(check.claim) == wrong else good).append(check.score)
    fixtures = {"supported": len(good), "planted": len(bad), "auc": auc(good, bad),
                "kept": sum(s >= judge.threshold for s in good), "caught": sum(s < judge.threshold for s in bad)}
    held_out = json.loads((REPO / "bench" / "gold" / "planted_lihua.json").read_text(encoding="utf-8"))["items"]
    good, bad, wrong_verdicts = [], [], []
    for item in held_out:
        (check,) = judge.check([item["claim"]], [(LIHUA_DOCS / d).read_text(encoding="utf-8") for d in item["docs"]])
        (good if item["kind"] == "correct" else bad).append(check.score)
        if check.supported != (item["kind"] == "correct"):
            wrong_verdicts.append({"claim": item["claim"], "kind": item["kind"], "reason": check.reason})
    lihua = {"supported": len(good), "planted": len(bad), "auc": auc(good, bad),
             "kept": sum(s >= judge.threshold for s in good), "caught": sum(s < judge.threshold for s in bad),
             "wrong_verdicts": wrong_verdicts}
    return {"fixtures": fixtures, "lihua_held_out": lihua}


def main() -> None:
    judge = LexicalJudge()
    started = time.perf_counter()
    answers = planted_answers(judge)
    claims = judge_auc(judge)
    elapsed = time.perf_counter() - started
    print(f"planted errors caught {answers['caught']}/{answers['planted']} ({answers['caught_rate']:.1%}), correct "
          f"claims kept {answers['kept']}/{answers['correct_claims']} ({answers['kept_rate']:.1%})")
    for name, part in claims.items():
        print(f"judge on {name}: AUC {part['auc']}, kept {part['kept']}/{part['supported']}, caught "
              f"{part['caught']}/{part['planted']}")
    write_json(RESULTS_DIR / "answer_verification.json", {
        "planted_answers": answers, "judge": claims,
        "note": "The fixture set is what the judge was developed on. The LiHua-World set was written before the "
                "judge first saw it; on that first run the judge rejected 11 of its 12 correct claims (all 14 planted "
                "errors caught) because of chat-log speaker labels, CamelCase names like 'AdamSmith' and reporting "
                "verbs; the numbers here are after fixing those general causes, so it is no longer strictly held out.",
        "seconds": round(elapsed, 2), "loadavg": loadavg(),
    })


if __name__ == "__main__":
    main()
