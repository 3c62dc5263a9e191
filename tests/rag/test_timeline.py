"""Which of two events came first, answered from the dates of the documents that state them."""

from __future__ import annotations

import pytest
from answer_helpers import hit

from ragtune.rag.timeline import EventGap, answer_order, event_gap, event_order, locate, time_question

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("question", "asked", "reference", "before"),
    [
        ("Did Yuriko ask Li Hua for help with her studio's homepage before she booked a seat at the cafe?",
         "Yuriko ask Li Hua for help with her studio's homepage", "she booked a seat at the cafe", True),
        ("Did Wolfgang arrive in Hong Kong after he informed Li Hua about his upcoming trip?",
         "Wolfgang arrive in Hong Kong", "he informed Li Hua about his upcoming trip", False),
        # Two relation words: the one that opens a clause naming who acted is the question's.
        ("Question: Did Jennifer remind Li Hua to eat protein after the workout before she shared tips with the group?",
         "Jennifer remind Li Hua to eat protein after the workout", "she shared tips with the group", True),
        # No such clause: a relation word inside the asked event's words comes first.
        ("Did Chae tell Li Hua that a warm shower before sleeping helps before sharing the neuroscience article?",
         "Chae tell Li Hua that a warm shower before sleeping helps", "sharing the neuroscience article", True),
        ("在王伟道歉之前，李华原谅他了吗？", "李华原谅他", "王伟道歉", True),
        ("王伟搬家以后，李华去看过他吗？", "李华去看过他", "王伟搬家", False),
    ],
)
def test_the_two_events_of_an_order_question(question, asked, reference, before):
    order = event_order(question)
    assert order is not None and (order.asked, order.reference, order.before) == (asked, reference, before)


@pytest.mark.parametrize("question", [
    "Who does Li Hua watch the movie with?", "What happened before?", "Is the refund window 30 days?",
    "报销之前需要什么？",
    # Rules, not past events: no document's date answers them (a policy PDF's creation date is not when it applies).
    "Do I need approval before booking a flight?", "Is a receipt required before the refund is paid?",
    "How long does delivery take from the order to the door?", "报销之前需要审批吗？", "从下单到发货需要多久？",
])
def test_no_order_question(question):
    assert event_order(question) is None and event_gap(question) is None


def _dated(name: str, text: str, created_at: str | None):
    part = hit(name, text, document=name)
    part.meta.created_at = created_at
    return part


def _answer(question, search):
    asked = time_question(question)
    assert asked is not None, question
    return answer_order(question, asked, search)


LOGS = [
    _dated("0111.txt", "LiHua: Wolfgang, can you recommend a gym near the office?\nWolfgangSchulz: Try FitZone!",
           "2026-01-11T08:00"),
    _dated("0831.txt", "LiHua: Jennifer, any book recommendations on fitness nutrition?\nJenniferMoore: Sure!",
           "2026-08-31T19:00"),
    _dated("undated.txt", "LiHua: Jennifer, which book on fitness nutrition should I read first?", None),
]


def _search(event: str):
    # Every log, the one sharing most words with the event first (what a retriever would return).
    words = set(event.lower().split())
    return sorted(LOGS, key=lambda h: -len(words & set(h.text.lower().split())))


def test_the_dates_of_the_two_passages_decide():
    question = ("Did Li Hua ask Wolfgang Schulz for a recommendation on a gym before asking Jennifer for book "
                "recommendations on fitness nutrition?")
    answer = _answer(question, _search)
    assert answer is not None and answer.yes
    # Each passage that asks is quoted with its reply, as an extractive answer is.
    assert answer.text == (
        "Yes. On 2026-01-11 08:00: “LiHua: Wolfgang, can you recommend a gym near the office? WolfgangSchulz: Try "
        "FitZone!” [1] Later, on 2026-08-31 19:00: “LiHua: Jennifer, any book recommendations on fitness "
        "nutrition? JenniferMoore: Sure!” [2]")
    flipped = _answer(question.replace(" before ", " after "), _search)
    assert flipped is not None and not flipped.yes and flipped.text.startswith("No. On 2026-01-11 08:00:")


def test_no_answer_when_the_dates_cannot_decide():
    question = "Did Li Hua ask Wolfgang for a gym recommendation before asking Jennifer for fitness nutrition books?"
    # Only undated passages state the second event: no date to compare.
    assert _answer(question, lambda event: [LOGS[0], LOGS[2]]) is None
    # Both events in one document, or at the same time.
    same = _dated("same.txt", "LiHua: Wolfgang, recommend a gym? Also, Jennifer, books on fitness nutrition?",
                  "2026-03-01T10:00")
    assert _answer(question, lambda event: [same]) is None
    twin = _dated("twin.txt", LOGS[1].text, "2026-01-11T08:00")
    assert _answer(question, lambda event: [LOGS[0], twin]) is None
    # An event no passage states.
    assert _answer("Did Li Hua buy a bike before Wolfgang moved to Berlin?", _search) is None


def test_locate_keeps_the_events_names():
    # "Jennifer" is named by the event: a passage about someone else's books does not state it.
    other = _dated("x.txt", "LiHua: Adam, any book recommendations on fitness nutrition?", "2026-02-01")
    assert locate("Li Hua ask Jennifer for book recommendations on fitness nutrition", [other]) is None
    found = locate("Li Hua ask Jennifer for book recommendations on fitness nutrition", [other, LOGS[1]])
    assert found is not None and found.hit.document_id == "0831.txt" and found.created_at == "2026-08-31T19:00"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Is the time interval more than 7 days between Adam asking LiHua to measure the window and Adam informing "
         "Li Hua that he booked the curtain?",
         EventGap("Adam asking LiHua to measure the window", "Adam informing Li Hua that he booked the curtain", 7.0)),
        ("Is the time interval between LiHua asking Jake to help with dribbling and Li Hua asking the group about "
         "UCL matches more than 2 days (restrict your search within August)?",
         EventGap("LiHua asking Jake to help with dribbling", "Li Hua asking the group about UCL matches", 2.0)),
        ("Did it take less than a week from Adam asking about the installation date to Adam reminding LiHua about "
         "the installation?",
         EventGap("Adam asking about the installation date", "Adam reminding LiHua about the installation", 7.0,
                  more=False)),
        ("How long did it take in total from LiHua planning on getting the air-conditioner to the air-conditioner "
         "been installed?",
         EventGap("LiHua planning on getting the air-conditioner", "the air-conditioner been installed")),
        ("从李华买空调到空调装好用了多久？", EventGap("李华买空调", "空调装好")),
        ("李华问房东和房东回复之间相隔超过三天吗？", EventGap("李华问房东", "房东回复", 3.0)),
    ],
)
def test_the_two_events_and_the_amount_of_a_time_question(question, expected):
    assert event_order(question) is None and event_gap(question) == expected


def test_the_time_between_two_events_is_read_from_their_dates():
    question = ("Is the time interval between Li Hua asking Wolfgang for a gym recommendation and Li Hua asking "
                "Jennifer for fitness nutrition books more than 200 days?")
    answer = _answer(question, _search)
    # 11 January 08:00 to 31 August 19:00: 232 days.
    assert answer is not None and answer.yes and answer.text.startswith("Yes: 232 days. On 2026-01-11 08:00: “LiHua:")
    fewer = _answer(question.replace("more than 200", "more than 300"), _search)
    assert fewer is not None and not fewer.yes and fewer.text.startswith("No: 232 days.")
    long = _answer("How long was it from Li Hua asking Wolfgang for a gym recommendation to Li Hua asking "
                        "Jennifer for fitness nutrition books?", _search)
    assert long is not None and long.yes is None and long.text.startswith("About 232 days. On 2026-01-11 08:00:")


PLANNING = [
    _dated("1102.txt", "Ravi: Morning Mei, the vendor review is on Friday.\nRavi: I will send the reminder to the "
                       "whole team tomorrow.", "2026-11-02T09:00"),
    _dated("1103.txt", "Ravi: Mei, I sent the reminder about the vendor review to everyone.", "2026-11-03T10:00"),
    _dated("1105.txt", "Mei: Ravi, the vendor cancelled, so the review moved to next Tuesday.", "2026-11-05T15:00"),
]


def test_an_event_that_is_a_message_is_found_by_its_own_words():
    # "send" and "reminder" say how it was told in most questions ("Did Adam tell Li Hua …"); here the sending
    # is the event, and "sent" is the same verb as "send".
    answer = _answer("Did Ravi send the reminder before the review moved?", lambda event: PLANNING)
    assert answer is not None and answer.yes
    # The message that says it was sent, not the one that planned it the day before.
    assert answer.earlier.created_at == "2026-11-03T10:00"
    assert answer.text.startswith("Yes. On 2026-11-03 10:00: “Ravi: Mei, I sent the reminder")
    # Only the plan: it is all there is, and it is quoted as said.
    planned = _answer("Did Ravi send the reminder before the review moved?", lambda event: [PLANNING[0], PLANNING[2]])
    assert planned is not None and planned.earlier.created_at == "2026-11-02T09:00"


def test_two_events_of_one_message_are_told_apart_by_a_better_statement_elsewhere():
    trip = [
        _dated("1219.txt", "WolfgangSchulz: Just a heads up, I'm off to Hong Kong for a couple of days next week.\n"
                           "LiHua: Ooh, nice trip! Bring me some snacks from Hong Kong!", "2026-12-19T19:00"),
        _dated("1220.txt", "WolfgangSchulz: I'm heading to Hong Kong soon to take photos.", "2026-12-20T20:00"),
        _dated("1223.txt", "WolfgangSchulz: Just touched down in Hong Kong! Arrived safely.", "2026-12-23T23:00"),
    ]
    answer = _answer("Did Wolfgang arrive in Hong Kong after he told Li Hua about his trip?", lambda event: trip)
    assert answer is not None and answer.yes
    # The trip was told of on the 19th; the arrival is the 23rd's message, not the plans in between.
    assert (answer.earlier.created_at, answer.later.created_at) == ("2026-12-19T19:00", "2026-12-23T23:00")
    # With only the first message, both events are in it: its date cannot order them.
    assert _answer("Did Wolfgang arrive in Hong Kong after he told Li Hua about his trip?",
                   lambda event: trip[:1]) is None


def test_first_says_which_time_not_what_happened():
    logs = [_dated("0428.txt", "WolfgangSchulz: Want to celebrate with dinner on Thursday?", "2026-04-28T18:30"),
            _dated("0930.txt", "LiHua: Sure, I agree, let's go out for dinner again!", "2026-09-30T16:00")]
    answer = _answer("Did Li Hua agree to go out for dinner after Wolfgang first asked him about dinner?",
                     lambda event: logs)
    assert answer is not None and answer.yes and answer.earlier.created_at == "2026-04-28T18:30"
