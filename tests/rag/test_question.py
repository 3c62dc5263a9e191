"""Question focus: the kind of answer asked for, its head word, and follow-ups."""

from __future__ import annotations

import pytest

from ragtune.rag.claims import terms_of
from ragtune.rag.question import NAME, NUMBER, OPEN, TIME, YES_NO, analyse_question, is_follow_up

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("question", "slot"),
    [
        ("How many engineers work on Project Quill?", NUMBER),
        ("What is the hotel limit in Paris?", NUMBER),
        ("Which extension do I call to report a lost laptop?", NUMBER),
        ("What time does the canteen open?", TIME),
        ("When was Harbor House built?", TIME),
        ("Who leads Project Nimbus?", NAME),
        ("Which app is used to photograph receipts?", NAME),
        ("Can contractors use the gym?", YES_NO),
        ("Describe the refund process.", OPEN),
        ("每月可以申请几天远程办公？", NUMBER),
        ("公司食堂几点开门？", TIME),
        ("超过五千元的报销需要谁审批？", NAME),
        ("病假需要医院证明吗？", YES_NO),
        # The question word it opens with decides: a later "when" joins a clause.
        ("Why can't people sit on the benches when Turalyon says they are installed?", OPEN),
        ("How does strength training help when you play soccer?", OPEN),
        ("What did Adam say when Li Hua asked about the rent?", OPEN),
        ("What time does the event start when it rains?", TIME),
        # "share" here is a verb of the relative clause, not the share asked for.
        ("What is the article that Chae shares with LiHua about?", OPEN),
        ("What share of the budget goes to travel?", NUMBER),
    ],
)
def test_the_kind_of_answer_is_read_from_the_question(question, slot):
    assert analyse_question(question).slot == slot


def test_heads_and_names_say_what_the_answer_must_be_about():
    focus = analyse_question("How many patents does Project Nimbus hold?")
    assert focus.heads == {"patent"} and focus.names == {"project", "nimbus"}
    assert not focus.names_head({"project", "nimbus", "budget"}, "a budget of 3.4 million EUR")
    assert analyse_question("Up to what share of the salary is matched?").head_units == {"%"}
    assert analyse_question("每月可以申请几天远程办公？").head_units == {"day"}
    assert "平台" in analyse_question("机票通过哪个平台预订？").heads
    # A classifier ('kinds of', 'type of') is not what is asked for: the word after it is.
    assert analyse_question("What kinds of flowers does Li Hua recommend?").heads == {"flower"}
    assert analyse_question("Which type of lighting is used in the garden?").heads == {"light"}
    assert not analyse_question("What type of lighting is used?").names_head({"type", "use"}, "A type is used.")
    # A head that names only the kind of answer is not a word the answer must hold; a concrete one still is.
    aspects = analyse_question("What aspects of Sekiro does ThaneChambers highlight?")
    assert not aspects.heads and aspects.names_head({"sekiro"}, "Sekiro has a unique combat system.")
    assert not analyse_question("What suggestions does Jennifer give for endurance?").heads
    assert not analyse_question("李华有什么建议？").heads
    assert analyse_question("What drinks does Wolfgang want?").heads == {"drink"}


def test_a_question_for_a_name_is_about_what_is_named_and_wants_a_name():
    focus = analyse_question("What is the name of the gym that Wolfgang recommended to Li Hua?")
    # 'name' is what is asked for, not a word the answer holds ("a gym called FitZone").
    assert "name" not in focus.terms and focus.heads == {"gym"} and focus.wants_name
    assert focus.filled_by("WolfgangSchulz: There's a nice gym called FitZone not too far from you.")
    # New words are not enough, nor the speaker's label: the answer must name something.
    assert not focus.filled_by("WolfgangSchulz: There's a nice gym not too far from you, with great classes.")
    assert analyse_question("What's the title of the book Jennifer recommends?").filled_by(
        'JenniferMoore: Try "Precision Nutrition", it is great.')
    chinese = analyse_question("这家健身房叫什么名字？")
    assert "名字" not in chinese.terms and "名字" not in chinese.heads


def test_a_slot_is_filled_by_a_value_the_question_does_not_state():
    focus = analyse_question("Who must approve expense reports above 2,000 EUR?")
    assert not focus.filled_by("Expense reports above 2,000 EUR need approval.")
    assert focus.filled_by("Reports above 2,000 EUR need the approval of the department head.")
    assert not analyse_question("How long is parental leave?").filled_by("Parental leave is generous.")


def test_a_follow_up_borrows_the_earlier_questions_terms_where_they_help():
    focus = analyse_question("And in Berlin?", context="What is the hotel limit in Paris?")
    assert focus.weights == {"berlin": 1.0} and focus.borrowed["hotel"] == 0.25 and focus.slot == NUMBER
    assert focus.coverage({"berlin", "hotel", "limit"}) == 1.0
    assert focus.coverage({"berlin"}) == 1.0  # a follow-up may change the subject: borrowed terms never count against
    assert focus.coverage({"hotel", "limit", "pari"}) < 0.5  # the earlier question alone answers nothing new
    again = analyse_question("What about it?", context="What is the hotel limit in Paris?")
    assert set(again.weights) == {"hotel", "limit", "pari"}


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        ("And in Berlin?", True),
        ("What about London?", True),
        ("How long do I have to submit them?", True),
        ("那上海呢？", True),
        ("成都呢？", True),
        ("What is the hotel limit in Paris?", False),
        ("北京出差每晚住宿上限是多少？", False),
    ],
)
def test_follow_ups_are_recognised(question, follow_up):
    assert is_follow_up(question) is follow_up


def test_a_citation_marker_is_not_a_value_that_fills_the_slot():
    # '[1]' was read as the number 1: a sentence that only restates the question, cited, filled its slot.
    allowance = analyse_question("How much is the meal allowance?")
    assert not allowance.filled_by("The meal allowance is generous [1].")
    assert allowance.filled_by("The meal allowance is 55 EUR [1].")
    assert not analyse_question("When does the office open?").filled_by("The office opens early [2].")
    assert not analyse_question("Who does Li Hua plan to celebrate Chinese Lunar New Year with?").filled_by(
        "Li Hua is a Chinese Lunar New Year [1].")
    assert analyse_question("How many days of leave do I get?").names_head(set(), "You get 25 days [1].")
    assert not analyse_question("How many days of leave do I get?").names_head(set(), "You get plenty [25].")


def test_a_code_or_password_fills_the_slot():
    # Words with a digit are left out of the terms; they are what some questions ask for.
    focus = analyse_question("What is the Wi-Fi password?")
    assert focus.filled_by('The Wi-Fi password is "Family123" [1].')
    assert not focus.filled_by("The Wi-Fi password is [1].")
    assert not analyse_question("Who owns ticket FAC-22?").filled_by("Ticket FAC-22 is owned [1].")


@pytest.mark.parametrize(
    ("question", "dated"),
    [
        ("When did Adam Smith inform Li Hua about the pipes?", True),
        ("When was the first time Wolfgang went to the basement?", True),
        ("When is the garage sale being discussed?", True),
        ("李华什么时候通知的房东？", True),
        ("房东是哪天提醒李华交房租的？", True),
        ("When is the web design seminar at Wolfgang's company?", False),  # an event's own time
        ("When is the music concert that Wolfgang invites Li Hua to?", False),  # the saying is in a relative clause
        ("When does Li Hua plan to celebrate the new year?", False),
        ("Who told Li Hua about the pipes?", False),  # asks for no time at all
        ("公司食堂几点开门？", False),
    ],
)
def test_a_question_for_when_something_was_said_is_answered_by_a_date(question, dated):
    assert analyse_question(question).dated_answer is dated


def test_when_in_chinese_is_a_question_word_not_a_head():
    # 什么时候 asks for a time: '时候' is no word an answer must hold.
    focus = analyse_question("公司什么时候发工资？")
    assert focus.slot == TIME and not focus.heads
    assert focus.names_head(focus.terms, "工资每月10日发放。")


@pytest.mark.parametrize("question", ["What day is the vendor review?", "On which day is the vendor review?",
                                      "When is the vendor review?", "供应商评审是哪天？"])
def test_a_day_without_a_number_answers_when(question):
    focus = analyse_question(question)
    assert focus.slot == TIME
    # "day" is what is asked for, not a word the answer must say or an amount of days it must state.
    assert not focus.heads and not focus.head_units and "day" not in focus.weights
    for answer in ("The vendor review is on Friday.", "The vendor review moved to next Tuesday.",
                   "供应商评审在下周二。"):
        assert focus.filled_by(answer)
    assert not focus.filled_by("The vendor review is with the whole team.")
    # A time the question already names is no answer to it.
    assert not analyse_question("When on Friday is the review?").filled_by("The review is on Friday.")


def test_what_time_asks_for_an_hour_not_a_day():
    assert not analyse_question("What time do we meet on Friday?").filled_by("We meet after work today.")
    assert analyse_question("What time do we meet on Friday?").filled_by("We meet at 5:30.")
    assert analyse_question("When do we meet?").filled_by("We meet after work today.")


def test_words_for_how_something_was_said_count_half():
    focus = analyse_question("Who initiates the suggestion to go to the grocery store after work?")
    assert focus.weights["suggest"] == focus.weights["initi"] == 0.5
    assert focus.weights["groceri"] == 1.0
    assert analyse_question("Who proposes a picnic?").weights["propos"] == 0.5
    assert analyse_question("谁建议去超市？").weights["建议"] == 0.5


@pytest.mark.parametrize(
    ("question", "holder"),
    [
        ("What does Evangeline say about Real Madrid's history?", "Evangeline"),
        ("Which team's style of play does Farrah remember as 'Total football'?", "Farrah"),
        ("What could have changed everything for Cersei according to Tamara?", "Tamara"),
        ("Who is the most hateable character in Merrick's opinion?", "Merrick"),
        ("What is LiHua's reaction to the news about the new software?", "LiHua"),
        ("What time does WolfgangSchulz propose for going to the store?", "WolfgangSchulz"),
        # Named as the holder beats the subject; 'can X' need not be who says it; a possessive names a thing.
        ("After what time can Li Hua come by, according to Adam Smith?", "Adam Smith"),
        ("After what time can Li Hua come by?", ""),
        ("What does Hailey's bakery offer on Sundays?", ""),
        ("Who invites Li Hua to the bake sale?", ""),
        ("李华觉得这部电影怎么样？", "李华"),
        ("根据王梅的说法，评审在哪天？", "王梅"),
        ("在拉维看来，哪家餐厅最好？", "拉维"),
        ("公司的报销上限是多少？", ""),
        ("李华什么时候发的提醒？", ""),
    ],
)
def test_whose_words_a_question_asks_about(question, holder):
    assert analyse_question(question).holder == holder


def test_where_it_was_said_is_not_what_the_question_is_about():
    focus = analyse_question("When is the community meeting for the garden project scheduled according to the "
                             "discussion on 20260507?")
    assert set(focus.weights) == terms_of("community meeting garden project scheduled")
    assert "convers" not in analyse_question("Who scored as mentioned in the conversation?").weights
    # A discussion that is the topic stays.
    assert {"discuss", "budget"} <= set(analyse_question("What was decided in the discussion of the budget?").weights)
