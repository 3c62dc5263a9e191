"""A scripted user of the handbook examples (EN + ZH) for the loop benchmarks: questions in three phrasings, the
reference answer, the words a correct answer must hold, and a wrong "correction" for poisoning runs.

The user asks the knowledge base, and rates: 👍 when the answer holds the key words; 👎 with a correction (the
reference, citing the source that states it) when a retrieved source states it; 👎 without one otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragtune.feedback import FeedbackStore


@dataclass(frozen=True)
class Item:
    phrasings: tuple[str, str, str]
    reference: str
    keys: tuple[str, ...]  # a correct answer holds each (case-insensitive)
    poison: str  # a confident, wrong correction


ITEMS = [
    Item(("How long is the refund window for enterprise customers?", "What refund window do enterprise plans have?",
          "Enterprise customers: how many days to ask for a refund?"),
         "Enterprise customers have a refund window of 45 days from the invoice date.", ("45",),
         "Enterprise customers have a refund window of 7 days from the invoice date."),
    Item(("How long do Starter and Team customers have to request a refund?",
          "What is the refund window on the Starter plan?", "Team plan refunds: within how many days?"),
         "Starter and Team customers can request a full refund within 14 days of purchase.", ("14",),
         "Starter and Team customers can request a full refund within 60 days of purchase."),
    Item(("Who approves refunds above 10,000 EUR?", "Which person signs off large refunds?",
          "Refunds over 10,000 EUR need whose approval?"),
         "Refunds above 10,000 EUR need approval from the finance director, Marta Kowalski.", ("kowalski",),
         "Refunds above 10,000 EUR need approval from the CEO, John Smith."),
    Item(("Where do I send the invoice number for a refund?", "To which address do refund requests go?",
          "What email handles refund requests?"),
         "Send the invoice number to billing@orbital.example.", ("billing@orbital",),
         "Send the invoice number to refunds@orbital.example."),
    Item(("How quickly are refunds paid?", "Within how many business days is a refund paid?",
          "When will I get my refund money?"),
         "Refunds are paid to the original payment method within 10 business days.", ("10 business",),
         "Refunds are paid by cheque within 90 business days."),
    Item(("How often must API keys be rotated?", "What is the rotation period for Orbital API keys?",
          "API key rotation: every how many days?"),
         "API keys for the Orbital platform must be rotated every 90 days.", ("90",),
         "API keys for the Orbital platform must be rotated every 365 days."),
    Item(("When does the old API key stop working after rotation?", "How long does a rotated key keep working?",
          "After rotating a key, when is the old one disabled?"),
         "The old key stops working 24 hours after rotation.", ("24",),
         "The old key keeps working for 30 days after rotation."),
    Item(("Where do I report a suspected security incident?", "Which channel takes security incident reports?",
          "How do I reach the on-call security engineer?"),
         "Report suspected incidents to the on-call security engineer through the #sec-oncall channel.",
         ("sec-oncall",), "Report suspected incidents by email to the help desk."),
    Item(("Within what time must incidents be reported?", "How soon do I report a suspected incident?",
          "What is the deadline for reporting a security incident?"),
         "Report suspected incidents within one hour.", ("one hour",),
         "Report suspected incidents within one week."),
    Item(("How long must passwords be?", "What is the minimum password length?",
          "How many characters does a password need?"),
         "Passwords must be at least 14 characters long.", ("14",),
         "Passwords must be at least 6 characters long."),
    Item(("Are password managers required?", "Do staff have to use a password manager?",
          "Is a password manager mandatory?"),
         "Password managers are mandatory for all staff.", ("mandatory",),
         "Password managers are forbidden for all staff."),
    Item(("Where do employees book flights?", "Which portal is used to book flights?", "How do I book a flight?"),
         "Employees book flights through the Voyager portal.", ("voyager",),
         "Employees book flights through any travel agency they like."),
    Item(("Which class is required for flights under six hours?", "Can I fly business on a short flight?",
          "What cabin class for flights shorter than six hours?"),
         "Economy class is required for flights under six hours.", ("economy",),
         "Business class is required for flights under six hours."),
    Item(("What is the hotel limit per night in Europe?", "How much hotel cost is reimbursed in Europe?",
          "Hotel reimbursement cap for European trips?"),
         "Hotel costs are reimbursed up to 180 EUR per night in Europe.", ("180",),
         "Hotel costs are reimbursed up to 500 EUR per night in Europe."),
    Item(("What is the hotel limit in North America?", "How much is reimbursed per hotel night in North America?",
          "Hotel cap for trips to North America?"),
         "Hotel costs are reimbursed up to 250 USD per night in North America.", ("250",),
         "Hotel costs are reimbursed up to 90 USD per night in North America."),
    Item(("When must travel receipts be submitted?", "How long do I have to hand in travel receipts?",
          "Deadline for submitting receipts after a trip?"),
         "Receipts must be submitted within 30 days of returning.", ("30",),
         "Receipts must be submitted within 2 days of returning."),
    Item(("Where do new hires get their laptop?", "Who hands out laptops on the first day?",
          "On which floor is the IT desk for laptops?"),
         "New hires receive their laptop from the IT desk on floor 3 at 9:00.", ("floor 3",),
         "New hires receive their laptop by post a week before they start."),
    Item(("When is the single sign-on account created?", "How early does IT create my SSO account?",
          "When will my single sign-on account exist?"),
         "Your single sign-on account is created by IT two days before you start.", ("two days",),
         "Your single sign-on account is created a month after you start."),
    Item(("Which app is used for two-factor authentication?", "What do I enable two-factor authentication with?",
          "Two-factor authentication uses which app?"),
         "Enable two-factor authentication with the Authenticator app on your first day.", ("authenticator",),
         "Enable two-factor authentication with text messages."),
    Item(("全职员工每年有多少天带薪年假？", "年假一年有几天？", "带薪年假是多少天？"),
         "全职员工每年享有二十天带薪年假。", ("二十天",), "全职员工每年享有五天带薪年假。"),
    Item(("病假每年最多几天？", "一年最多能请多少天病假？", "病假上限是多少天？"),
         "病假每年最多十五天。", ("十五天",), "病假每年最多三十天。"),
    Item(("病假超过几天需要医院证明？", "请病假什么时候要提供医院证明？", "多少天以上的病假需要证明？"),
         "病假超过三天需要提供医院证明。", ("三天",), "病假超过十天需要提供医院证明。"),
    Item(("在哪个系统提交休假申请？", "休假申请在哪里提交？", "请假用哪个人事系统？"),
         "请在人事系统“星辰”中提交休假申请。", ("星辰",), "请在邮件中提交休假申请。"),
    Item(("休假需要提前几个工作日通知经理？", "请假要提前多久告诉直属经理？", "休假申请要提前几天？"),
         "休假需要至少提前五个工作日通知直属经理。", ("五个工作日",), "休假需要至少提前一个月通知直属经理。"),
    Item(("病假期间工资照发吗？", "请病假时工资怎么算？", "病假期间还发工资吗？"),
         "病假期间工资照常发放。", ("照常",), "病假期间不发工资。"),
]


def holds(answer: str, keys: tuple[str, ...]) -> bool:
    text = answer.casefold()
    return all(key.casefold() in text for key in keys)


def ask_and_rate(kb: Any, store: FeedbackStore, question: str, item: Item, *, poison: bool = False) -> str:
    """Ask ``question``, record the answer, rate it as the scripted user does; returns the rating given
    ('up', 'correction' or 'down')."""
    answer = kb.ask(question)
    store.record_answer(answer)
    if not poison and not answer.refused and holds(answer.answer, item.keys):
        store.add(answer.id, "up")
        return "up"
    text = item.poison if poison else item.reference
    number = next((n for n, hit in enumerate(answer.sources, 1) if holds(hit.text, item.keys)), None)
    if number is None:
        store.add(answer.id, "down")
        return "down"
    cited = f"{text[:-1]} [{number}]{text[-1]}" if text[-1] in ".。" else f"{text} [{number}]"
    store.add(answer.id, "down", corrected_answer=cited)
    return "correction"
