"""Questions and preference pairs over the example handbook (examples/handbook), English and Chinese, for the
reward model, GRPO and best-of-n (bench/train_rl*.py, recipes/reward.toml, recipes/grpo.toml, tests/train).

Every question is asked of a real knowledge base built from examples/handbook: its three best hits are the
sources, exactly as ``ragtune ask`` would give them to the model. A question is answerable when one of those
sources holds its fact; its reference answer then cites that source. Questions the handbook does not answer
(some close to facts it does hold: "hotel limit in Asia") are unanswerable; their reference is the refusal.

Preference pairs, on the same prompts (the RAG prompt with numbered sources):

- answerable: the correct cited answer is preferred to a wrong number or detail (cited), to the correct answer
  without its citation, to the correct answer with an invented detail (cited), and to a needless refusal;
- unanswerable: the refusal is preferred to an invented answer (cited) and to a copied, irrelevant source
  sentence (cited).

The handbook and every invented detail are fiction (Orbital Inc., the 星辰 system), so no model can know them.
Facts are split into training and held-out ones: held-out questions, answers and pairs are of facts the
training data never shows.

    python bench/train_rl_data.py     # rewrites recipes/data/handbook-{rl,pairs}{,-heldout}.jsonl
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_data import FACTS, write_jsonl  # noqa: E402

from ragtune.train.data import feedback_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "recipes" / "data"

# Per English fact of train_data.FACTS (same order): a wrong number or detail, and the answer with an invented
# detail the handbook never states.
EN_WRONG = [
    "Starter and Team customers can request a full refund within 30 days of purchase",
    "Enterprise customers have 60 days from the invoice date to request a refund",
    "Refunds above 5,000 EUR need approval from the finance director, Marta Kowalski",
    "Send the invoice number to billing@orbital.example; refunds are paid to the original payment method within "
    "20 business days",
    "API keys must be rotated every 60 days",
    "Rotate it under Settings → API keys in the admin console; the old key stops working 48 hours later",
    "Report it to the on-call security engineer in #sec-oncall within four hours",
    "Passwords must be at least 12 characters long, and password managers are mandatory",
    "Flights are booked through the Atlas portal",
    "Economy is required under eight hours; business class needs manager approval on longer flights",
    "Hotels are reimbursed up to 150 EUR per night in Europe and 250 USD in North America",
    "Receipts must be submitted within 60 days of returning",
    "New hires get their laptop from the IT desk on floor 5 at 9:00",
    "IT creates your single sign-on account one week before you start",
    "Enable two-factor authentication with the Authenticator app within your first month",
]
EN_INVENTED = [
    "Starter and Team customers can request a full refund within 14 days of purchase, minus a 5% processing fee",
    "Enterprise customers have 45 days from the invoice date, and the account manager Priya Raman can extend it once",
    "Refunds above 10,000 EUR need approval from the finance director, Marta Kowalski, and a sign-off from legal",
    "Send the invoice number with form R-12 to billing@orbital.example; refunds are paid within 10 business days",
    "API keys must be rotated every 90 days, and every rotation is logged in the Keystone audit tool",
    "Run 'orbital-cli keys rotate' to rotate it; the old key stops working 24 hours later",
    "Report it in #sec-oncall within one hour and file form SEC-7 in the Jira security project",
    "Passwords must be at least 14 characters long and must be changed every 30 days",
    "Flights are booked through the Voyager portal after approval from the travel desk in Lisbon",
    "Economy is required under six hours, and directors may fly business class on any flight",
    "Hotels are reimbursed up to 180 EUR per night in Europe, 250 USD in North America and 20,000 JPY in Japan",
    "Receipts must be submitted within 30 days of returning through the Ledgerly app",
    "New hires get their laptop, a badge and a welcome hoodie from the IT desk on floor 3 at 9:00",
    "IT creates your single sign-on account two days before you start and emails the password to your manager",
    "Enable two-factor authentication with a YubiKey hardware token on your first day",
]

# Chinese facts of examples/handbook/休假制度.md: (passage, questions, answer, wrong, invented).
ZH_FACTS: list[tuple[str, list[str], str, str, str]] = [
    ("全职员工每年享有二十天带薪年假。",
     ["全职员工每年有多少天年假？", "带薪年假一年几天？", "我每年能休几天年假？", "全职员工的年假是多少天？"],
     "全职员工每年享有二十天带薪年假", "全职员工每年享有十五天带薪年假",
     "全职员工每年享有二十天带薪年假，另外还有三天生日假"),
    ("入职第一年按月折算，每工作满一个月获得一天半年假。",
     ["入职第一年的年假怎么算？", "新员工第一年有年假吗？", "第一年每个月能获得多少年假？",
      "入职不满一年年假如何折算？"],
     "入职第一年按月折算，每工作满一个月获得一天半年假", "入职第一年按月折算，每工作满一个月获得两天年假",
     "入职第一年按月折算，每工作满一个月获得一天半年假，试用期内不能休"),
    ("病假每年最多十五天，超过三天需要提供医院证明。",
     ["病假每年最多几天？", "一年能请多少天病假？", "病假有上限吗？", "病假最多可以休多久？"],
     "病假每年最多十五天", "病假每年最多十天", "病假每年最多十五天，没用完的可以折算成现金"),
    ("病假每年最多十五天，超过三天需要提供医院证明。",
     ["病假需要医院证明吗？", "请几天病假需要证明？", "什么情况下要交医院证明？", "病假超过多少天要提供证明？"],
     "病假超过三天需要提供医院证明", "病假超过五天需要提供医院证明",
     "病假超过三天需要提供医院证明，并由人事总监王丽华签字"),
    ("病假期间工资照常发放。",
     ["病假期间有工资吗？", "请病假会扣工资吗？", "病假时工资怎么发？", "病假期间薪水照发吗？"],
     "病假期间工资照常发放", "病假期间工资按百分之八十发放", "病假期间工资照常发放，但当月奖金减半"),
    ("请在人事系统“星辰”中提交休假申请",
     ["休假申请在哪里提交？", "用哪个系统申请休假？", "怎么提交休假申请？", "休假申请通过什么系统？"],
     "请在人事系统“星辰”中提交休假申请", "请在人事系统“北斗”中提交休假申请",
     "请在人事系统“星辰”中提交休假申请，并抄送财务部"),
    ("并至少提前五个工作日通知直属经理。",
     ["休假要提前多久通知经理？", "申请休假需要提前几天？", "休假前要提前几个工作日通知？", "请年假要提前多少天说？"],
     "休假需要至少提前五个工作日通知直属经理", "休假需要至少提前三个工作日通知直属经理",
     "休假需要至少提前五个工作日通知直属经理，并获得部门副总裁批准"),
]

# Questions the handbook does not answer, with the invented answer a model might give (many borrow a number or
# name from a nearby fact).
UNANSWERABLE: list[tuple[str, str]] = [
    ("What is the hotel limit in Asia?", "Hotels in Asia are reimbursed up to 200 USD per night"),
    ("What is the refund window for the Pro plan?", "Pro plan customers can request a refund within 30 days"),
    ("How many vacation days do interns get?", "Interns get 10 vacation days a year"),
    ("Who approves refunds under 1,000 EUR?", "Refunds under 1,000 EUR are approved by the support lead"),
    ("How often must passwords be changed?", "Passwords must be changed every 90 days"),
    ("What is the Wi-Fi password for guests?", "The guest Wi-Fi password is Orbital2024"),
    ("How many days a week can I work from home?", "You can work from home two days a week"),
    ("What is the meal allowance on business trips?", "The meal allowance is 50 EUR per day"),
    ("Who is the CEO of Orbital?", "The CEO of Orbital is Marta Kowalski"),
    ("Can I use my own laptop for work?", "Yes, you can use your own laptop once IT has approved it"),
    ("How long are incident reports kept?", "Incident reports are kept for seven years"),
    ("Which train class is allowed on business trips?", "First class is allowed on trains longer than three hours"),
    ("Which floor is the finance team on?", "The finance team sits on floor 3"),
    ("How many API keys can one account have?", "Each account can have up to 5 API keys"),
    ("How long is parental leave?", "Parents get 16 weeks of paid leave"),
    ("On which day is salary paid?", "Salaries are paid on the 25th of each month"),
    ("兼职员工每年有多少天年假？", "兼职员工每年享有十天带薪年假"),
    ("婚假有几天？", "婚假为十天"),
    ("产假有多长时间？", "产假为九十八天"),
    ("加班可以调休吗？", "加班可以按一比一调休"),
    ("没休完的年假可以留到明年吗？", "未休完的年假可以累积到第二年"),
    ("公司的报销系统叫什么？", "报销系统叫“月亮”"),
    ("丧假有几天？", "丧假为三天"),
    ("病假期间可以出差吗？", "病假期间可以出差，但需要经理批准"),
]

# Held out: questions, answers and pairs of these facts appear only in the held-out files.
HELD_OUT_EN = {2, 6, 10, 13}
HELD_OUT_ZH = {2, 5}
HELD_OUT_UNANSWERABLE = {1, 4, 8, 12, 17, 21}
REFUSALS = {"en": ("I don't know.", "The knowledge base does not contain an answer to this question."),
            "zh": ("不知道。", "知识库中没有找到这个问题的答案。")}


def _flat(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())  # markdown (**Settings**) and line breaks differ


def cite(answer: str, number: int, language: str) -> str:
    return f"{answer} [{number}]{'。' if language == 'zh' else '.'}"


def plain(answer: str, language: str) -> str:
    return answer + ("。" if language == "zh" else ".")


def questions() -> list[dict[str, Any]]:
    """Every question with its fact: (language, fact id, question, passage, answer, wrong, invented)."""
    rows: list[dict[str, Any]] = []
    for index, (passage, asked, answer) in enumerate(FACTS):
        for question in asked:
            rows.append({"language": "en", "fact": f"en-{index}", "question": question, "passage": passage,
                         "answer": answer, "wrong": EN_WRONG[index], "invented": EN_INVENTED[index],
                         "held_out": index in HELD_OUT_EN})
    for index, (passage, asked, answer, wrong, invented) in enumerate(ZH_FACTS):
        for question in asked:
            rows.append({"language": "zh", "fact": f"zh-{index}", "question": question, "passage": passage,
                         "answer": answer, "wrong": wrong, "invented": invented, "held_out": index in HELD_OUT_ZH})
    for index, (question, invented) in enumerate(UNANSWERABLE):
        language = "zh" if re.search(r"[\u4e00-\u9fff]", question) else "en"
        rows.append({"language": language, "fact": f"none-{index}", "question": question, "passage": None,
                     "answer": None, "wrong": None, "invented": invented,
                     "held_out": index in HELD_OUT_UNANSWERABLE})
    return rows


def with_sources(rows: list[dict[str, Any]], k: int = 3) -> list[dict[str, Any]]:
    """Each question with the top-k hits of a knowledge base built from examples/handbook as its sources."""
    from ragtune.kb import KnowledgeBase
    from ragtune.types import embedding_text

    with tempfile.TemporaryDirectory() as folder, KnowledgeBase.open(folder, create=True) as kb:
        kb.ingest(ROOT / "examples" / "handbook")
        for row in rows:
            row["contexts"] = [embedding_text(h.text, h.meta) for h in kb.search(row["question"], k)]
    return rows


def rl_row(row: dict[str, Any]) -> dict[str, Any]:
    """A question for RL and evaluation: sources, whether they answer it, the reference answer and its source."""
    language = row["language"]
    source = None
    if row["passage"]:
        found = [i for i, text in enumerate(row["contexts"], 1) if _flat(row["passage"]) in _flat(text)]
        source = found[0] if found else None
    reference = cite(row["answer"], source, language) if source else REFUSALS[language][0]
    return {"question": row["question"], "contexts": row["contexts"], "reference": reference,
            "answerable": source is not None, "source": source, "language": language, "fact": row["fact"]}


def pairs(row: dict[str, Any], rl: dict[str, Any], number: int) -> list[dict[str, Any]]:
    """Preference pairs on one question's RAG prompt (see the module docstring)."""
    language = row["language"]
    prompt = feedback_prompt(row["question"], rl["contexts"])
    refusal = REFUSALS[language][number % 2]  # both the model's short refusal and ragtune's own sentence
    base = {"prompt": prompt, "language": language, "fact": row["fact"]}
    if rl["answerable"]:
        source = rl["source"]
        good = cite(row["answer"], source, language)
        rejected = {
            "wrong_number": cite(row["wrong"], source, language),
            "uncited": plain(row["answer"], language),
            "invented": cite(row["invented"], source, language),
            "needless_refusal": refusal,
        }
        return [{**base, "chosen": good, "rejected": bad, "kind": kind} for kind, bad in rejected.items()]
    other = 1 + number % len(rl["contexts"])
    copied = re.split(r"(?<=[.。])\s*", rl["contexts"][other - 1].split("\n\n")[-1])[0].rstrip(".。")
    return [
        {**base, "chosen": refusal, "rejected": cite(row["invented"], other, language), "kind": "invented_answer"},
        {**base, "chosen": refusal, "rejected": cite(copied, other, language), "kind": "irrelevant_copy"},
    ]


def build() -> dict[str, list[dict[str, Any]]]:
    rows = with_sources(questions())
    files: dict[str, list[dict[str, Any]]] = {"rl": [], "rl-heldout": [], "pairs": [], "pairs-heldout": []}
    for number, row in enumerate(rows):
        rl = rl_row(row)
        if row["passage"] and not rl["answerable"]:
            # The knowledge base's search missed the fact: given these sources, refusing is right.
            row = {**row, "passage": None}
        suffix = "-heldout" if row["held_out"] else ""
        files[f"rl{suffix}"].append(rl)
        files[f"pairs{suffix}"].extend(pairs(row, rl, number))
    return files


def main() -> None:
    files = build()
    for name, rows in files.items():
        write_jsonl(DATA / f"handbook-{name}.jsonl", rows)
    summary = {name: len(rows) for name, rows in files.items()}
    for name in ("rl", "rl-heldout"):
        summary[f"{name} answerable"] = sum(r["answerable"] for r in files[name])
        summary[f"{name} zh"] = sum(r["language"] == "zh" for r in files[name])
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
