"""Shared text rules: character classes, language detection and sentence splitting."""

from __future__ import annotations

import pytest

from ragtune.text import CJK_WIDE_RE, HAN_RE, WORD_OR_HAN_RE, detect_language, sentences, split_sentences

pytestmark = pytest.mark.unit


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith met Mr. Lee in the U.S. on Monday. Pi is 3.14 today! Is it? Yes.",
         ["Dr. Smith met Mr. Lee in the U.S. on Monday.", "Pi is 3.14 today!", "Is it?", "Yes."]),
        ("See Fig. 3 and Smith et al. (2020), e.g. Python, i.e. code. No. 5 is here.",
         ["See Fig. 3 and Smith et al. (2020), e.g. Python, i.e. code.", "No. 5 is here."]),
        ("他说：“今天下雨了。”我们走吧！真的吗？是的；好……那就这样。",
         ["他说：“今天下雨了。”", "我们走吧！", "真的吗？", "是的；", "好……", "那就这样。"]),
        ("「去吧。」她说。『好！』", ["「去吧。」", "她说。", "『好！』"]),
        ("Wait... what? He left… Then she came.", ["Wait... what?", "He left…", "Then she came."]),
        ("Steps:\n- open the lid\n- pour water\n1. boil\n2) serve", ["Steps:", "- open the lid", "- pour water",
                                                                "1. boil", "2) serve"]),
        ("要求：\n一、按时提交\n（二）签字确认", ["要求：", "一、按时提交", "（二）签字确认"]),
        ("A line that wraps\nonto the next line. Then a new one.", ["A line that wraps\nonto the next line.",
                                                                    "Then a new one."]),
        ("The ratio is\n3.14 in this case.", ["The ratio is\n3.14 in this case."]),
        ("Version 2.5 of example.com works. OK!然后我们走。", ["Version 2.5 of example.com works.", "OK!",
                                                           "然后我们走。"]),
        ("“Go.” She said. (Really.) Yes.", ["“Go.”", "She said.", "(Really.)", "Yes."]),
        ("First paragraph\n\nsecond paragraph", ["First paragraph", "second paragraph"]),
        ("   ", []),
    ],
)
def test_sentence_splitter_handles_abbreviations_chinese_quotes_and_lists(text, expected):
    assert _sentences(text) == expected


def test_sentence_spans_are_exact_and_respect_a_sub_range():
    text = "Skip this. Take this one. And this! 不要这句。"
    start, end = text.index("Take"), text.index("不要")
    spans = split_sentences(text, start, end)
    assert [text[s:e] for s, e in spans] == ["Take this one.", "And this!"]
    assert all(start <= s < e <= end for s, e in spans)


def test_semicolons_end_sentences_only_when_asked():
    text = "Refunds take 14 days; exchanges take 30 days. Done."
    assert sentences(text) == ["Refunds take 14 days; exchanges take 30 days.", "Done."]
    assert sentences(text, semicolons=True) == ["Refunds take 14 days;", "exchanges take 30 days.", "Done."]
    # "a;b" without a space is no clause end (code, lists of values).
    assert sentences("Use a;b here.", semicolons=True) == ["Use a;b here."]


def test_line_breaks_end_sentences_only_when_asked():
    text = "A line that wraps\nonto the next line."
    assert sentences(text) == [text]
    assert sentences(text, line_breaks=True) == ["A line that wraps", "onto the next line."]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("The refund window is 30 days.", "en"), ("年假为每年十五天，需提前申请。", "zh"),
     ("使用 API key 调用接口，每 90 天轮换一次。", "zh"), ("12345 !!!", None)],
)
def test_language_is_chinese_when_han_characters_are_a_large_share_of_letters(text, expected):
    assert detect_language(text) == expected


def test_character_classes_cover_every_han_block_and_cjk_punctuation():
    for ch in ("中", "㐀", "豈", "\U00020000"):
        assert HAN_RE.match(ch), repr(ch)
    assert not HAN_RE.match("a") and not HAN_RE.match("。")
    for ch in ("。", "，", "あ", "中", "Ａ"):
        assert CJK_WIDE_RE.match(ch), repr(ch)
    assert WORD_OR_HAN_RE.findall("年假 20 days") == ["年", "假", "20", "days"]
