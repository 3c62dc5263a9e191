"""Extractive answers: the passage that answers — sentence, table row or list item — quoted and cited, EN and ZH."""

from __future__ import annotations

import pytest
from answer_helpers import hit

from ragtune.rag.extract import closest_passage, extract_answer, passages
from ragtune.rag.question import analyse_question
from ragtune.rag.sources import Source

pytestmark = pytest.mark.unit


def _extract(question, *sources):
    return extract_answer(analyse_question(question), list(sources))


@pytest.mark.parametrize(
    ("question", "doc", "expected"),
    [
        ("What is the hotel limit in Paris?", "expenses.md", "“City: Paris, Hotel limit per night: 250 EUR” [1]"),
        ("What is the hotel limit per night in Berlin?", "expenses.md",
         "“City: Berlin, Hotel limit per night: 180 EUR” [1]"),
        ("What hotel limit applies in cities that are not listed?", "expenses.md",
         "“Cities not listed use the default limit of 140 EUR per night.” [1]"),
        ("Which app is used to photograph receipts?", "expenses.md",
         "“Photograph every receipt in the Ledgerly app.” [1]"),  # a numbered list item
        ("How long do I have to submit expense reports after a trip?", "expenses.md",
         "“Expense reports must be submitted within 30 days after the end of a trip.” [1]"),
        ("What is the monthly price of the Silver tier?", "support.md",
         "“Tier: Silver, First response: 24 hours, Price per month: 249 EUR” [1]"),
        ("What is the budget of Project Nimbus?", "projects.md",
         "“Project Nimbus builds a satellite sensor for hail warnings. It is led by Dr. Ines Varga and has a budget "
         "of 3.4 million EUR.” [1]"),  # a sentence that opens with 'It' keeps the one it leans on
        ("上海的住宿标准是每晚多少钱？", "差旅制度.md", "“城市：上海，每晚住宿上限：650元”[1]"),
        ("出差补贴每天多少钱？", "差旅制度.md", "“出差补贴为每天一百二十元。”[1]"),
        ("机票通过哪个平台预订？", "差旅制度.md", "“机票统一通过“云途”平台预订，国内城市之间优先乘坐高铁二等座。”[1]"),
        ("婚假有几天？", "福利制度.md", "“婚假为十天，需提供结婚证。”[1]"),
    ],
)
def test_the_supporting_passage_is_quoted_and_cited(doc_source, question, doc, expected):
    extract = _extract(question, doc_source(doc))
    assert extract is not None and extract.text == expected


@pytest.mark.parametrize(
    ("question", "doc"),
    [
        ("How many patents does Project Nimbus hold?", "projects.md"),  # nothing names patents
        ("What is the hotel limit in Tokyo for managers with platinum status?", "expenses.md"),  # names missing
        ("Who is the chief executive of the company?", "benefits.md"),
        ("产假有多少天？", "福利制度.md"),  # 婚假 is not 产假
        ("出国出差的住宿标准是多少？", "差旅制度.md"),  # abroad is not covered
        # A year the question states must be stated where the answer is: the sources give no 2030 figures.
        ("What is the 2030 budget of Project Nimbus?", "projects.md"),  # the budget, but of no year
        ("When is the first launch of Project Nimbus planned in 2030?", "projects.md"),  # the 2027 launch
        ("Project Nimbus在2030年的预算是多少？", "projects.md"),
    ],
)
def test_no_passage_is_quoted_when_none_answers(doc_source, question, doc):
    assert _extract(question, doc_source(doc)) is None


def test_the_source_that_answers_wins_over_an_earlier_one(doc_source):
    extract = _extract("How long is parental leave?", doc_source("expenses.md", 1), doc_source("benefits.md", 2))
    assert extract is not None and extract.passage.number == 2
    assert extract.text == "“Parental leave is 18 weeks at full pay for every parent.” [2]"


def test_passages_keep_table_headers_headings_and_chunk_ids():
    source = Source(1, [
        hit("tiers.md", "| Tier | Response |\n| --- | --- |\n| Gold | 4 hours |", chunk=1, heading_path=("Support",)),
        hit("tiers.md", "Escalations go to Priya Nair.", chunk=2, heading_path=("Support", "Escalations")),
    ])
    found = passages(source)
    assert [p.text for p in found] == ["Tier: Gold, Response: 4 hours", "Escalations go to Priya Nair."]
    assert {"tier", "support", "respons"} <= found[0].context and found[0].chunk_id == "tiers.md#1"
    assert "escal" in found[1].context and found[1].chunk_id == "tiers.md#2"


def test_the_closest_passage_is_the_snippet_a_reader_sees(doc_source):
    source = doc_source("benefits.md")
    assert closest_passage(source, analyse_question("How much is the gym stipend?")) == (
        "The gym stipend is 40 EUR per month, paid with the salary.")
    # Headings are never the snippet, even when they match best.
    assert closest_passage(doc_source("projects.md"), analyse_question("Project Nimbus patents?")).startswith(
        "Project Nimbus builds")


def test_a_chat_lines_later_sentence_is_quoted_with_its_speaker():
    chat = ("Time: 20260105_14:00\nLiHua: Hey Adam! When's a good time for me to come by?\n"
            "AdamSmith: Hi Li Hua! You can come by anytime after 5 PM today.")
    extract = _extract("After what time can Li Hua come by, according to Adam Smith?", Source(1, [hit("c.txt", chat)]))
    # Li Hua's question is quoted with Adam's reply, whose later sentence is quoted with his name.
    assert extract is not None and extract.text == ("“LiHua: When's a good time for me to come by? AdamSmith: Hi Li "
                                                    "Hua! You can come by anytime after 5 PM today.” [1]")
    only = _extract("Who can come by anytime after 5 PM today?", Source(1, [hit("c.txt", chat)]))
    assert only is not None and only.text == "“AdamSmith: You can come by anytime after 5 PM today.” [1]"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        # The year is stated by the heading the passage stands under; other numbers a question states need not be
        # in the answer ('which two', a date written another way); a date states its year.
        ("Which two engineers lead Project Quill?", "“Tomas Berg leads a team of 12 engineers, and the first release "
                                                   "is planned for March 2026.” [1]"),
        ("Who leads the team of 12 engineers?", "“Tomas Berg leads a team of 12 engineers, and the first release is "
                                               "planned for March 2026.” [1]"),
        ("What is the budget for 2030?", "“The budget is 5.2 million EUR.” [1]"),
        ("2030年的预算是多少？", "“预算为520万元。”[1]"),
        ("Who opened the office on 2026-03-12?", "“Mara Quist opened the Lisbon office on 12 March 2026.” [1]"),
        ("Who opened the Porto office in 2026?", "“Jon Ek opened the Porto office on 2026-05-04.” [1]"),
    ],
)
def test_a_year_in_the_question_is_found_in_the_passage_or_its_heading(doc_source, question, expected):
    plan = Source(1, [hit("plan.md", "## Plan for 2030\n\nThe budget is 5.2 million EUR.\n\n## Offices\n\n"
                                     "Mara Quist opened the Lisbon office on 12 March 2026.\n\n## Branches\n\n"
                                     "Jon Ek opened the Porto office on 2026-05-04.\n\n## 2030年计划\n\n"
                                     "预算为520万元。")])
    source = doc_source("projects.md") if "engineers" in question else plan
    extract = _extract(question, source)
    assert extract is not None and extract.text == expected


REPORT = Source(1, [hit("report.md", "## Results\n\nIn 2025 the company opened two plants. Revenue grew to 5.1 million "
                                     "EUR and costs were 3.2 million EUR.\n\nIn 2024 revenue was 4.0 million EUR. The "
                                     "headcount reached 120 people.\n\n## Outlook\n\nThe headcount will grow.\n\n"
                                     "## 年报\n\n公司在2023年成立。员工人数为15人。")])


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        # The sentence before states the year a sentence stands under, until another year or heading.
        ("What was the revenue in 2025?", "“Revenue grew to 5.1 million EUR and costs were 3.2 million EUR.” [1]"),
        ("What was the headcount in 2024?", "“The headcount reached 120 people.” [1]"),
        ("2023年员工人数是多少？", "“员工人数为15人。”[1]"),
        # 2025 was followed by 2024; a new heading ends the year above it.
        ("What was the headcount in 2025?", None),
        ("How will the headcount change in 2024?", None),
        ("2024年员工人数是多少？", None),
    ],
)
def test_a_year_stated_by_the_sentence_before_frames_the_passage(question, expected):
    extract = _extract(question, REPORT)
    assert (extract.text if extract else None) == expected


@pytest.mark.parametrize(
    ("question", "text", "expected"),
    [
        # A request in a chat is quoted with the next speaker's reply (the asker's own next line is skipped).
        ("What is the Wi-Fi password?",
         "LiHua: Just wanted to ask for the Wi-Fi password when you get a chance. Thanks!\n"
         "AdamSmith: Sure! It is Family123.\nLiHua: Great.",
         "“LiHua: Just wanted to ask for the Wi-Fi password when you get a chance. AdamSmith: Sure! It is "
         "Family123.” [1]"),
        ("周末健身房几点开门？", "王芳：请问周末健身房几点开门？\n李华：早上八点。\n王芳：好的。",
         "“王芳：请问周末健身房几点开门？李华：早上八点。”[1]"),
        # A question in a document is quoted with the sentence after it.
        ("How do I reset my VPN token?", "## FAQ\n\nHow do I reset my VPN token? Open the Keyhaven portal and "
                                         "choose Reset. Tokens expire after 90 days.",
         "“How do I reset my VPN token? Open the Keyhaven portal and choose Reset.” [1]"),
        # Of two question-and-reply pairs, the one whose question is closer to the user's is quoted.
        ("What kinds of flowers does Adam suggest for the beds?",
         "LiHua: Anything to add to the beds?\nAdamSmith: Maybe more seating and some flowers.\n"
         "LiHua: Which flowers would you put in the beds?\nAdamSmith: Lavender or coneflowers.",
         "“LiHua: Which flowers would you put in the beds? AdamSmith: Lavender or coneflowers.” [1]"),
        # A statement that holds a question word asks nothing: quoted alone.
        ("Who decides whether a refund is approved?", "## Refunds\n\nThe team lead decides whether a refund is "
                                                      "approved. Refunds are paid within 5 days.",
         "“The team lead decides whether a refund is approved.” [1]"),
        ("谁决定是否批准报销？", "## 报销\n\n部门经理决定是否批准报销。报销在五天内支付。",
         "“部门经理决定是否批准报销。”[1]"),
        # Nothing replies under the same heading: a question alone answers nothing.
        ("How do I reset my VPN token?", "## FAQ\n\nHow do I reset my VPN token?\n\n## Other\n\nOpen the portal.",
         None),
    ],
)
def test_a_passage_that_asks_is_quoted_with_its_reply(question, text, expected):
    extract = _extract(question, Source(1, [hit("chat.txt", text)]))
    assert (extract.text if extract else None) == expected


def _dated(name: str, text: str, created_at: str | None) -> Source:
    part = hit(name, text)
    part.meta.created_at = created_at
    return Source(1, [part])


def test_when_something_was_said_is_answered_by_the_date_of_the_message():
    chat = ("AdamSmith: I heard from some neighbors that there might be some issues with the pipes in the basement.\n"
            "LiHua: Oh no, thanks for letting me know.")
    question = "When did Adam Smith inform Li Hua about potential issues with the pipes in the basement?"
    extract = _extract(question, _dated("20260301_1300.txt", chat, "2026-03-01T13:00"))
    assert extract is not None and extract.text == (
        "On 2026-03-01 13:00: “AdamSmith: I heard from some neighbors that there might be some issues with the pipes "
        "in the basement.” [1]")
    # Without a date the passage states no time, so nothing answers; the date alone names no day without a time.
    assert _extract(question, _dated("pipes.txt", chat, None)) is None
    day = _extract(question, _dated("pipes.txt", chat, "2026-03-01"))
    assert day is not None and day.text.startswith("On 2026-03-01: “AdamSmith:")
    # In Chinese, and with a passage that says its own time of day (the date still leads it).
    zh = _extract("房东什么时候通知李华地下室的水管有问题？",
                  _dated("z.txt", "房东：听邻居说地下室的水管可能有问题。", "2026-03-01T13:00"))
    assert zh is not None and zh.text == "2026-03-01 13:00：“房东：听邻居说地下室的水管可能有问题。”[1]"
    invite = _extract("When did Li Hua invite Adam to check the basement renovation?",
                      _dated("i.txt", "LiHua: Adam, could you join me around 7 PM to check the basement renovation?",
                             "2026-02-23T17:00"))
    assert invite is not None
    assert invite.text.startswith("On 2026-02-23 17:00: “LiHua: Adam, could you join me around 7 PM")


def test_an_event_date_is_not_the_date_it_was_talked_about():
    # A question about when an event is, and a passage that names its own date, keep to what the passage says.
    plans = _dated("p.txt", "WolfgangSchulz: The web design seminar at my company is on Thursday at 3 PM.",
                   "2026-04-01T10:00")
    seminar = _extract("When is the web design seminar at Wolfgang's company?", plans)
    assert seminar is not None and seminar.text == ("“WolfgangSchulz: The web design seminar at my company is on "
                                                    "Thursday at 3 PM.” [1]")
    concert = _dated("c.txt", "WolfgangSchulz: I told Li Hua about the concert on March 7th at 6 PM.",
                     "2026-03-02T18:00")
    told = _extract("When did Wolfgang tell Li Hua about the concert?", concert)
    assert told is not None and not told.text.startswith("On ")


def test_a_chinese_when_question_is_answered_by_the_time_its_passage_states():
    extract = _extract("工资什么时候发放？", Source(1, [hit("工资.md", "工资每月10日发放。")]))
    assert extract is not None and extract.text == "“工资每月10日发放。”[1]"


def test_when_something_was_done_is_the_message_that_says_it_was_not_the_plan():
    plan = hit("1102.txt", "Ravi: I will send the reminder to the whole team tomorrow.", created_at="2026-11-02T09:00")
    done = hit("1103.txt", "Ravi: Mei, I sent the reminder about the vendor review to everyone.",
               created_at="2026-11-03T10:00")
    focus = analyse_question("When did Ravi send the reminder?")
    # The plan is the better-ranked source and holds every word of the question.
    extract = extract_answer(focus, [Source(1, [plan]), Source(2, [done])])
    assert extract is not None and extract.text == (
        "On 2026-11-03 10:00: “Ravi: Mei, I sent the reminder about the vendor review to everyone.” [2]")
    alone = extract_answer(focus, [Source(1, [plan])])
    assert alone is not None and alone.text.startswith("On 2026-11-02 09:00: “Ravi: I will send")


def test_a_sentence_that_introduces_a_list_is_quoted_with_the_list():
    markdown = ("# Onboarding\n\nThe following documents are required:\n\n- a signed contract\n- a copy of your "
                "passport\n- your bank details\n\n## IT\n\nLaptops are handed out on day one.")
    extract = _extract("Which documents are required for onboarding?", Source(1, [hit("on.md", markdown)]))
    assert extract is not None and extract.text == (
        "“The following documents are required: a signed contract; a copy of your passport; your bank details” [1]")
    handbook = "# 入职\n\n入职需要以下材料：\n\n- 劳动合同\n- 身份证复印件\n- 银行卡信息\n\n## 设备\n\n第一天领取电脑。"
    chinese = _extract("入职需要哪些材料？", Source(1, [hit("on.md", handbook)]))
    assert chinese is not None and chinese.text == "“入职需要以下材料：劳动合同；身份证复印件；银行卡信息”[1]"
    # In a conversation: the reply that introduces the list, its items, and not the next speaker's line.
    chat = ("LiHua: Do you have any tips for dealing with muscle soreness? Thanks a bunch!\n"
            "JenniferMoore: Totally normal after intense workouts. Here are a few tips you can try:\n\n"
            "1. **Hydration**: Drink plenty of water.\n\n2. **Stretching**: Stretch after the workout. It relieves "
            "tension.\n\nLiHua: Thanks for the tips!")
    tips = _extract("What are Jennifer Moore's tips for dealing with muscle soreness?", Source(1, [hit("c.txt", chat)]))
    assert tips is not None and tips.text == (
        "“LiHua: Do you have any tips for dealing with muscle soreness? JenniferMoore: Totally normal after intense "
        "workouts. Here are a few tips you can try: **Hydration**: Drink plenty of water. **Stretching**: Stretch "
        "after the workout. It relieves tension.” [1]")


def test_who_suggested_it_is_the_speaker_who_did():
    chat = ("WolfgangSchulz: Hey! Wanna hit the grocery store after work today? We can grab some snacks!\n"
            "LiHua: Sounds great! What time are you thinking?")
    extract = _extract("Who initiates the suggestion to go to the grocery store after work?",
                       Source(1, [hit("c.txt", chat)]))
    assert extract is not None and extract.text.startswith("“WolfgangSchulz: Wanna hit the grocery store after work")


def test_a_day_without_an_hour_answers_only_where_no_passage_states_one():
    invite = Source(1, [hit("a.txt", "HaileyJohnson: Just wanted to invite you to a special event at the bakery this "
                                     "Saturday!")])
    start = Source(2, [hit("b.txt", "LiHua: Sounds fun! What time does the event start?\nHaileyJohnson: The event "
                                     "starts at 10 AM at the bakery.")])
    question = "When does the special event at Hailey's bakery start?"
    both = _extract(question, invite, start)
    assert both is not None and both.text == "“HaileyJohnson: The event starts at 10 AM at the bakery.” [2]"
    alone = _extract(question, invite)
    assert alone is not None and alone.text.endswith("at the bakery this Saturday!” [1]")


def test_how_things_stand_now_is_the_newest_messages_to_say():
    planned = hit("1102.txt", "Ravi: Morning Mei, the vendor review is on Friday.", created_at="2026-11-02T09:00")
    moved = hit("1105.txt", "Mei: Ravi, the vendor cancelled, so the review moved to next Tuesday.",
                created_at="2026-11-05T15:00")
    sources = [Source(1, [planned]), Source(2, [moved])]
    now = _extract("When is the vendor review now?", *sources)
    assert now is not None and now.text.endswith("moved to next Tuesday.” [2]")
    # Without "now", the better match answers, whatever its date.
    assert _extract("When is the vendor review?", *sources).text.endswith("is on Friday.” [1]")


def test_a_plan_in_chinese_is_not_when_it_was_done():
    plan = hit("1102.txt", "拉维：我明天给全组发提醒。", created_at="2026-11-02T09:00")
    done = hit("1103.txt", "拉维：王梅，我已经给大家发了评审提醒。", created_at="2026-11-03T10:00")
    # The plan holds every word of the question; the message that says it was done splits 发了 as one word.
    extract = _extract("拉维什么时候发的提醒？", Source(1, [plan]), Source(2, [done]))
    assert extract is not None and extract.text == "2026-11-03 10:00：“拉维：王梅，我已经给大家发了评审提醒。”[2]"


GROUP_CHAT = ("Time: 20260908_10:00\n"
              "Elara: I praise Red Dead Redemption 2 as the game with the best storytelling in side quests!\n"
              "Jareth: For me the best game for storytelling is The Witcher 3, even in its side quests.\n"
              "Niamh: Do you think Jaime would have been happier that way?\n"
              "Tamara: Yeah, if Jaime had distanced himself from Cersei he would have had a fuller life.\n")


def test_a_suggestion_asked_as_a_question_is_the_askers():
    chat = ("LiHua: How about some cold beer to go with the hot pot?\n"
            "WolfgangSchulz: Beer it is! Perfect match for hot pot.")
    extract = _extract("What does LiHua suggest to have with the hot pot?", Source(1, [hit("h.txt", chat)]))
    assert extract is not None and extract.text.startswith("“LiHua: How about some cold beer to go with the hot pot? "
                                                           "WolfgangSchulz: Beer it is!")
    # What Wolfgang thinks of it is his reply, not the question Li Hua asks.
    assert _extract("What does WolfgangSchulz think of the cold beer?", Source(1, [hit("h.txt", chat)])) is not None
    # Where the holder does not speak, any line may answer (a report about someone, not their words).
    report = "The team tried the hot pot place. Wolfgang thinks cold beer is the perfect drink with hot pot."
    about = _extract("What drink does Wolfgang think is perfect with hot pot?", Source(1, [hit("r.txt", report)]))
    assert about is not None and "cold beer" in about.text


SEMINAR = ("Time: 20260511_11:00\n"
           "WolfgangSchulz: Hey! There's a web design seminar at my company this week. Want to join me?\n"
           "LiHua: Sounds awesome! When is it happening?\n"
           "WolfgangSchulz: It's on Thursday at 3 PM. Should be insightful!")
BREATHING = ("Time: 20260606_09:00\nJenniferMoore: Hey everyone! Let's crush this weekend with a workout!\n\n"
             "Also, I just want to share a cool breathing technique for running: try inhaling for 3 steps and "
             "exhaling for 2 steps.\nLiHua: Thanks, Jennifer!")
# Mei's line names Ravi too: only who speaks it tells whose recommendation it is.
RESTAURANTS = ("时间：2026年11月5日 10:00\n王梅：拉维，我推荐老街的川菜餐厅，味道很正宗。\n"
               "拉维：我推荐河边的日料餐厅，环境安静。\n李华：好的，我都去试试。")
ADVICE = ("Time: 20261010_10:10\n"
          "Saffron: Cersei and Tyrion never trusted each other.\n"
          "Quillan: I think if she had accepted his advice over her pride, that could have been a game-changer.\n"
          "Rowan: Totally agree.")


@pytest.mark.parametrize(
    ("question", "chat", "expected"),
    [
        # A question stands under the turn it answers (the seminar of Wolfgang's line before it).
        ("When is the web design seminar at Wolfgang's company happening?", SEMINAR,
         "“LiHua: When is it happening? WolfgangSchulz: It's on Thursday at 3 PM."),
        # A message of several lines is its speaker's.
        ("What breathing technique does Jennifer Moore suggest for running?", BREATHING,
         "“JenniferMoore: Also, I just want to share a cool breathing technique for running:"),
        # A line keeps the names of the turn it answers; a name said in no nearby line is still missing.
        ("What does Quillan suggest could have been a game-changer for Cersei?", ADVICE,
         "“Quillan: I think if she had accepted his advice"),
        ("What does Quillan suggest could have been a game-changer for Jaime?", ADVICE, None),
        # Whose view is asked is answered by their own line: Elara's holds more of the question's words, but the
        # question asks what Jareth praises; Niamh asks and Tamara answers, so that is Tamara's view, not Niamh's.
        ("Which game does Jareth praise for its storytelling in side quests?", GROUP_CHAT,
         "“Jareth: For me the best game for storytelling is The Witcher 3"),
        ("How does Niamh think Jaime would have been happier?", GROUP_CHAT, None),
        ("How does Tamara think Jaime would have been happier?", GROUP_CHAT,
         "“Niamh: Do you think Jaime would have been happier that way? Tamara: Yeah, if Jaime had distanced"),
        ("拉维推荐哪家餐厅？", RESTAURANTS, "“拉维：我推荐河边的日料餐厅"),
        ("王梅推荐哪家餐厅？", RESTAURANTS, "“王梅：拉维，我推荐老街的川菜餐厅"),
    ],
)
def test_a_chat_line_is_read_with_its_conversation(question, chat, expected):
    extract = _extract(question, Source(1, [hit("c.txt", chat)]))
    if expected is None:
        assert extract is None
    else:
        assert extract is not None and extract.text.startswith(expected)


def test_a_later_sentence_of_a_chat_line_that_points_back_keeps_the_one_before():
    chat = ("Time: 20260909_10:00\n"
            "Helios: \"Red Dead Redemption 2\" is a masterpiece! That game really makes you feel connected to the "
            "characters.\n"
            "JenniferMoore: Get enough protein after workouts. It's super important for keeping your body in shape!\n"
            "Mei: That works for me.")
    source = Source(1, [hit("h.txt", chat)])
    game = _extract("Which game does Helios call a masterpiece for making players feel connected to the characters?",
                    source)
    assert game is not None and game.text.startswith("“Helios: \"Red Dead Redemption 2\" is a masterpiece! That game")
    protein = _extract("Why is protein important according to JenniferMoore?", source)
    assert protein is not None and protein.text.startswith("“JenniferMoore: Get enough protein after workouts. It's")
    # Another speaker's line that points back is not joined to the line before it: it is Mei's alone.
    assert "Mei: That works for me." in [p.text for p in passages(source)]
    # A reply of three sentences that each lean on the one before is quoted once, in order.
    chain = ("JakeWatson: Who else deserves a mention?\nLiHua: Kanté can't be overlooked! He's all over the pitch. "
             "His work rate is unmatched.\nJakeWatson: True.")
    assert passages(Source(1, [hit("k.txt", chain)]))[0].text == (
        "JakeWatson: Who else deserves a mention? LiHua: Kanté can't be overlooked! He's all over the pitch. His "
        "work rate is unmatched.")


TIPS = ("Time: 20261023_23:00\n"
        "JakeWatson: Just wanna give you some practical tips after an intense game. Grab a snack with carbs and "
        "protein, like a banana with peanut butter. Stay hydrated too! Anyone up for practice on Saturday?\n"
        "LiHua: Thanks, Jake! Saturday works.")
LAMPS = ("Time: 20260604_10:00\n"
         "ArthasMenethil: Just a quick update, all the picnic tables are installed now! 🎉 But the varnish isn't dry "
         "yet, so please don't sit at them for now.\n"
         "Thrall: Great work!")
STORM = ("Time: 20260701_10:00\n"
         "TirionFordring: The storm and the rain have been going on for days! As a result, our construction has to be "
         "postponed.\nAdamSmith: Thanks for the update.")
STORM_ZH = "时间：2026年7月1日 10:00\n王梅：暴雨已经下了好几天了。因此施工只能推迟。\n李华：好的，知道了。"


@pytest.mark.parametrize(
    ("question", "chat", "starts", "holds", "leaves_out"),
    [
        # A message's first sentence announces; the next ones say it — quoted with them, not with the question that
        # closes the message or the next speaker's line.
        ("What tips does JakeWatson give after an intense game?", TIPS,
         "“JakeWatson: Just wanna give you some practical tips after an intense game. Grab a snack with carbs",
         "Stay hydrated too!", "Saturday"),
        # The rest of the message is part of what its line is about: neither sentence alone answers why no one may
        # sit at the tables the line announces.
        ("Why can't people sit at the picnic tables when ArthasMenethil announces that the picnic tables have been "
         "installed?", LAMPS, "“ArthasMenethil: Just a quick update, all the picnic tables are installed now!",
         "varnish isn't dry", "Great work"),
        # "As a result, …" says why only with the sentence before it.
        ("Why does the construction have to be postponed according to TirionFordring?", STORM,
         "“TirionFordring: The storm and the rain have been going on for days! As a result", "postponed", "Thanks"),
        ("王梅说施工为什么推迟？", STORM_ZH, "“王梅：暴雨已经下了好几天了。因此施工只能推迟。", "推迟", "知道了"),
    ],
)
def test_a_chat_line_is_quoted_with_the_rest_of_its_message(question, chat, starts, holds, leaves_out):
    extract = _extract(question, Source(1, [hit("c.txt", chat)]))
    assert extract is not None and extract.text.startswith(starts), extract
    assert holds in extract.text and leaves_out not in extract.text


def test_the_rest_of_a_message_is_bounded():
    parts = ["The seal is worn.", "The valve sticks.", "The hose leaks.", "The gauge is broken."]
    chat = f"Time: 20260101_10:00\nAdamSmith: I checked the garden pump in the shed. {' '.join(parts)}\nLiHua: Thanks!"
    extract = _extract("What did AdamSmith check in the shed?", Source(1, [hit("p.txt", chat)]))
    assert extract is not None
    assert extract.text.startswith("“AdamSmith: I checked the garden pump in the shed. The seal")
    assert "The valve sticks." in extract.text and "hose" not in extract.text  # two more sentences at most
    # ... and a few hundred characters: a long next sentence is left out.
    wordy = "The seal is worn " + "and worn again " * 25 + "."
    long = chat.replace(parts[0], wordy)
    extract = _extract("What did AdamSmith check in the shed?", Source(1, [hit("p.txt", long)]))
    assert extract is not None and extract.text == "“AdamSmith: I checked the garden pump in the shed.” [1]"
    # Lines without a speaker (a document, not a chat) are quoted alone, as before.
    doc = f"Adam checked the garden pump in the shed. {' '.join(parts)}"
    alone = _extract("What did Adam check in the shed?", Source(1, [hit("d.txt", doc)]))
    assert alone is not None and alone.text == "“Adam checked the garden pump in the shed.” [1]"


def test_a_question_for_an_aspect_or_a_suggestion_is_answered_by_what_is_said():
    chat = ("Time: 20261001_20:00\nLiHua: What do you think about Sekiro?\n"
            "ThaneChambers: Sekiro is amazing! It's got a unique combat system built on timing.\n"
            "Jennifer: To boost your endurance, try longer cardio sessions and interval training.")
    source = Source(1, [hit("s.txt", chat)])
    aspects = _extract("What aspects of Sekiro does ThaneChambers highlight?", source)
    assert aspects is not None and "unique combat system" in aspects.text
    tips = _extract("What suggestions does Jennifer give to boost endurance?", source)
    assert tips is not None and "interval training" in tips.text
    # A concrete head is still a word the answer must be about.
    assert _extract("What drinks does ThaneChambers like with Sekiro?", source) is None


def test_a_reply_is_quoted_as_the_message_it_is():
    chat = ("Time: 20260922_17:00\nLiHua: Which character stands out to you?\n"
            "EmilyBurnett: Galadriel is awesome! I love her too. I'm really drawn to Elrond. His mix of wisdom and "
            "vulnerability adds so much depth to the story.\nLiHua: Same here!")
    extract = _extract("What aspect of Elrond's character does Emily appreciate?", Source(1, [hit("e.txt", chat)]))
    assert extract is not None and extract.text.startswith("“LiHua: Which character stands out to you? EmilyBurnett:")
    assert "wisdom and vulnerability" in extract.text and "Same here" not in extract.text


# Two-hop answers: the question names neither the passage that answers nor what links it; a second passage does.
VENDOR = Source(1, [hit("vendors.md", "Pallisade Tools is managed by Nora Quinn. Nora Quinn joined in 2019 and "
                                      "reviews the contract every spring.")])
WAREHOUSE = Source(2, [hit("warehouses.md", "Pallisade Tools ships from the Dockside warehouse in Gdansk. The "
                                            "warehouse opens at seven.")])
OTHER = Source(3, [hit("other.md", "Corvid Supplies is managed by Omar Haddad. Corvid Supplies ships from the "
                                   "Northgate warehouse.")])


def test_a_chained_question_is_answered_by_the_bridge_and_the_passage_it_leads_to():
    extract = _extract("Which warehouse does the vendor managed by Nora Quinn ship from?", VENDOR, WAREHOUSE, OTHER)
    assert extract is not None and extract.bridge is not None
    assert extract.text == ("“Pallisade Tools is managed by Nora Quinn.” [1] “Pallisade Tools ships from the Dockside "
                            "warehouse in Gdansk.” [2]")
    assert (extract.bridge.number, extract.passage.number) == (1, 2)


def test_a_chained_chinese_question_is_answered_across_two_sources():
    owner = Source(1, [hit("平台.md", "“青松”平台由林嘉怡维护。林嘉怡每周一检查一次告警。")])
    site = Source(2, [hit("机房.md", "“青松”平台部署在杭州的数据中心。数据中心每季度演练一次断电。")])
    extract = _extract("林嘉怡维护的平台部署在哪个城市？", owner, site)
    assert extract is not None and extract.bridge is not None
    assert extract.text == "““青松”平台由林嘉怡维护。”[1]““青松”平台部署在杭州的数据中心。”[2]"
    # A name jieba tags (no capitals, no quotes) links them too, where one passage alone would answer half of it.
    fixed = Source(1, [hit("故障.md", "故障INC-5521由工程师严明轩修复，严明轩调试了整整一夜。")])
    mentor = Source(2, [hit("导师.md", "严明轩的导师是孟书瑶，孟书瑶负责平台技术小组。")])
    extract = _extract("修复故障INC-5521的工程师的导师是谁？", fixed, mentor)
    assert extract is not None and "孟书瑶" in extract.text and extract.bridge is not None


def test_no_two_hop_answer_without_a_link_or_for_a_one_hop_question():
    # The second passage shares no rare word with the first: no chain, nothing invented.
    unrelated = Source(2, [hit("w.md", "The Dockside warehouse in Gdansk opens at seven.")])
    assert _extract("Which warehouse does the vendor managed by Nora Quinn ship from?", VENDOR, unrelated) is None
    # Two orders placed in March are not linked by the month.
    first = Source(1, [hit("a.md", "Tessaly Foods ordered container batch CX-4410 in March.")])
    second = Source(2, [hit("b.md", "Orchard Lane Grocers ordered container batch CX-5582 in March.")])
    assert _extract("Which ship carried the container batch ordered by Tessaly Foods?", first, second) is None
    # A question one passage answers keeps its one quote, though another passage links to it.
    one = _extract("Which warehouse is managed by Ilse Brandt?",
                   Source(1, [hit("m.md", "The Dockside warehouse is managed by Ilse Brandt.")]), WAREHOUSE)
    assert one is not None and one.bridge is None
    assert one.text == "“The Dockside warehouse is managed by Ilse Brandt.” [1]"
