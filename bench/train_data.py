"""Synthetic cited-answer training data from the example handbook (examples/handbook), for bench/train_sft.py
and the sample files in recipes/data/.

Every example is a RAG prompt (the pipeline's own system and user templates, via
``ragtune.train.data.feedback_prompt``) with three numbered sources, one of which answers the question,
and a one-sentence answer that ends with that source's citation, e.g. "... within 14 days [2]." — the
fixed answer format the fine-tune should learn.

    python bench/train_data.py   # rewrites recipes/data/handbook-*.jsonl
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from ragtune.jsonl import write_jsonl
from ragtune.train.data import feedback_prompt

ROOT = Path(__file__).resolve().parents[1]

# (source passage, question paraphrases, answer without citation); passages quote examples/handbook.
FACTS: list[tuple[str, list[str], str]] = [
    ("Customers on the Starter and Team plans can request a full refund within 14 days of purchase.",
     ["How long do Starter customers have to ask for a refund?", "What is the refund window on the Team plan?",
      "Within how many days can a Starter plan be refunded?", "Can a Team customer get a refund after purchase?"],
     "Starter and Team customers can request a full refund within 14 days of purchase"),
    ("Enterprise customers have a refund window of 45 days from the invoice date.",
     ["What is the refund window for Enterprise customers?", "How long do Enterprise plans have to request a refund?",
      "From when is the Enterprise refund window counted?", "How many days can an Enterprise customer wait to ask "
      "for a refund?"],
     "Enterprise customers have 45 days from the invoice date to request a refund"),
    ("Refunds above 10,000 EUR need approval from the finance director, Marta Kowalski.",
     ["Who approves large refunds?", "Which refunds need the finance director's approval?",
      "Who is the finance director?", "Does a 20,000 EUR refund need approval?"],
     "Refunds above 10,000 EUR need approval from the finance director, Marta Kowalski"),
    ("Send the invoice number to billing@orbital.example. Refunds are paid to the original payment method within "
     "10 business days.",
     ["How do I request a refund?", "Where do I send a refund request?", "How long does a refund take to arrive?",
      "Where is a refund paid to?"],
     "Send the invoice number to billing@orbital.example; refunds are paid to the original payment method within "
     "10 business days"),
    ("API keys for the Orbital platform must be rotated every 90 days.",
     ["How often must API keys be rotated?", "What is the API key rotation period?",
      "When do Orbital API keys have to be replaced?", "Do API keys expire?"],
     "API keys must be rotated every 90 days"),
    ("To rotate a key, open the admin console, choose Settings → API keys, click Rotate, and update every service "
     "that uses the old key within 24 hours. The old key stops working 24 hours after rotation.",
     ["How do I rotate an API key?", "When does an old API key stop working?",
      "Where in the admin console are API keys rotated?", "How long is the old key valid after rotation?"],
     "Rotate it under Settings → API keys in the admin console; the old key stops working 24 hours later"),
    ("Report suspected incidents to the on-call security engineer through the #sec-oncall channel within one hour.",
     ["How do I report a security incident?", "Which channel is used for security incidents?",
      "How fast must an incident be reported?", "Who receives incident reports?"],
     "Report it to the on-call security engineer in #sec-oncall within one hour"),
    ("Passwords must be at least 14 characters long. Password managers are mandatory for all staff.",
     ["How long must passwords be?", "What is the minimum password length?", "Are password managers required?",
      "How many characters does a password need?"],
     "Passwords must be at least 14 characters long, and password managers are mandatory"),
    ("Employees book flights through the Voyager portal.",
     ["How do I book a flight?", "Which portal is used for flight bookings?", "Where are business trips booked?",
      "What tool do employees use to book flights?"],
     "Flights are booked through the Voyager portal"),
    ("Economy class is required for flights under six hours; business class is allowed for longer flights with "
     "manager approval.",
     ["Can I fly business class?", "Which class is required for short flights?",
      "When is business class allowed?", "Do I need approval for business class?"],
     "Economy is required under six hours; business class needs manager approval on longer flights"),
    ("Hotel costs are reimbursed up to 180 EUR per night in Europe and 250 USD per night in North America.",
     ["What is the hotel limit in Europe?", "How much hotel cost is reimbursed in North America?",
      "What is the nightly hotel allowance?", "How much can I spend on a hotel in Europe?"],
     "Hotels are reimbursed up to 180 EUR per night in Europe and 250 USD in North America"),
    ("Receipts must be submitted within 30 days of returning.",
     ["When must travel receipts be submitted?", "How long do I have to hand in receipts?",
      "What is the deadline for expense receipts?", "Within how many days are receipts due after a trip?"],
     "Receipts must be submitted within 30 days of returning"),
    ("New hires receive their laptop from the IT desk on floor 3 at 9:00.",
     ["Where do new hires get their laptop?", "When is the laptop handed out on the first day?",
      "Which floor is the IT desk on?", "What happens at 9:00 on the first day?"],
     "New hires get their laptop from the IT desk on floor 3 at 9:00"),
    ("Your single sign-on account is created by IT two days before you start.",
     ["When is my single sign-on account created?", "Who creates the SSO account?",
      "How early is the SSO account ready?", "Do I have an account before my first day?"],
     "IT creates your single sign-on account two days before you start"),
    ("Enable two-factor authentication with the Authenticator app on your first day.",
     ["When do I set up two-factor authentication?", "Which app is used for two-factor authentication?",
      "What must I enable on my first day?", "How is 2FA set up?"],
     "Enable two-factor authentication with the Authenticator app on your first day"),
]

CITATION_AT_END = re.compile(r"\[(\d+)\]\.?\s*$")


def cited_examples(seed: int = 0, variants: int = 5) -> list[dict[str, object]]:
    """One messages-format example per (fact, question, source order): answer + '[n]' citing the right source."""
    rng = random.Random(seed)
    examples = []
    for index, (passage, questions, answer) in enumerate(FACTS):
        others = [f[0] for i, f in enumerate(FACTS) if i != index]
        for question in questions:
            for _ in range(variants):
                sources = rng.sample(others, 2)
                position = rng.randrange(3)
                sources.insert(position, passage)
                prompt = feedback_prompt(question, sources)
                reply = f"{answer} [{position + 1}]."
                examples.append({"messages": [*prompt, {"role": "assistant", "content": reply}], "fact": index})
    rng.shuffle(examples)
    return examples


def split_by_fact(examples: list[dict[str, object]], held_out_facts: set[int]) -> tuple[list, list]:
    """Held-out examples are those of facts training never saw: the model must copy and cite, not recall."""
    train, held = [], []
    for example in examples:
        (held if example["fact"] in held_out_facts else train).append(example)
    return train, held


def write_recipe_data(directory: Path = ROOT / "recipes" / "data") -> None:
    """Small sample files so every recipe in recipes/ runs as shipped."""
    examples = cited_examples(seed=1, variants=1)[:40]
    write_jsonl(directory / "handbook-sft.jsonl", [{"messages": e["messages"]} for e in examples])
    preference, kto = [], []
    for example in examples:
        messages = example["messages"]
        prompt, good = messages[:-1], messages[-1]["content"]
        bad = CITATION_AT_END.sub("", good).rstrip(" .") + "."  # the same answer without its citation
        preference.append({"prompt": prompt, "chosen": good, "rejected": bad})
        kto.append({"prompt": prompt, "completion": good, "label": True})
        kto.append({"prompt": prompt, "completion": bad, "label": False})
    write_jsonl(directory / "handbook-preference.jsonl", preference)
    write_jsonl(directory / "handbook-kto.jsonl", kto)


if __name__ == "__main__":
    write_recipe_data()
