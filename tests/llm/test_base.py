"""Message and parameter validation, and cutting streamed text at stop strings."""

from __future__ import annotations

from typing import Any

import pytest

from ragtune.errors import ConfigError
from ragtune.llm import GenerationParams, truncate_at_stop, validate_messages

pytestmark = pytest.mark.unit


class TestValidateMessages:
    def test_valid_conversation_is_returned_as_plain_dicts(self) -> None:
        messages = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": ""},
        ]
        assert validate_messages(messages) == messages

    @pytest.mark.parametrize(
        ("messages", "expected"),
        [
            ([], "non-empty list"),
            ("hello", "non-empty list"),
            (None, "non-empty list"),
            (["hello"], r"messages\[0\] must be a dict"),
            ([{"content": "x"}], r"messages\[0\] lacks 'role'"),
            ([{"role": "user"}], r"messages\[0\] lacks 'content'"),
            ([{}], "lacks 'role' and 'content'"),
            ([{"role": "user", "content": "x"}, {"role": "tool", "content": "x"}], r"messages\[1\]\.role is 'tool'"),
            ([{"role": "user", "content": 3}], r"messages\[0\]\.content must be a string, got int"),
            ([{"role": "user", "content": "x", "name": "bob"}], "unsupported key.*name"),
        ],
    )
    def test_invalid_messages_name_the_problem(self, messages: Any, expected: str) -> None:
        with pytest.raises(ConfigError, match=expected):
            validate_messages(messages)


class TestGenerationParams:
    def test_defaults(self) -> None:
        assert GenerationParams.from_kwargs({}) == GenerationParams(256, 0.0, 1.0, (), None)

    def test_values_are_normalised(self) -> None:
        params = GenerationParams.from_kwargs({"max_tokens": 5, "temperature": 1, "stop": ["\n"], "seed": 3})
        assert params == GenerationParams(5, 1.0, 1.0, ("\n",), 3)
        controls = GenerationParams.from_kwargs({"repetition_penalty": 1, "no_repeat_ngram_size": 4})
        assert (controls.repetition_penalty, controls.no_repeat_ngram_size) == (1.0, 4)

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"max_token": 5}, "unknown generation parameter.*max_token"),
            ({"max_tokens": 0}, "max_tokens must be an integer greater than 0"),
            ({"max_tokens": 2.5}, "max_tokens must be an integer"),
            ({"max_tokens": True}, "max_tokens must be an integer"),
            ({"temperature": -0.1}, "temperature must be a number >= 0"),
            ({"temperature": "hot"}, "temperature must be a number"),
            ({"top_p": 0}, r"top_p must be a number in \(0, 1\]"),
            ({"top_p": 1.5}, r"top_p must be a number in \(0, 1\]"),
            ({"stop": "\n"}, "stop must be a list of strings"),
            ({"stop": [""]}, "stop strings must be non-empty"),
            ({"stop": [1]}, "stop strings must be non-empty strings"),
            ({"seed": 1.5}, "seed must be an integer"),
            ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0"),
            ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size must be an integer >= 0"),
            ({"no_repeat_ngram_size": 2.0}, "no_repeat_ngram_size must be an integer"),
        ],
    )
    def test_invalid_params_are_rejected(self, params: dict[str, Any], expected: str) -> None:
        with pytest.raises(ConfigError, match=expected):
            GenerationParams.from_kwargs(params)


class TestTruncateAtStop:
    @pytest.mark.parametrize(
        ("pieces", "stop", "expected"),
        [
            (["Hello ", "world"], [], "Hello world"),
            (["Hello ", "world. ", "Bye"], ["."], "Hello world"),
            (["Hello wo", "rld. Bye"], ["world"], "Hello "),
            (["Hel", "lo"], ["Hello"], ""),
            (["a", "b", "c", "d"], ["bc", "d"], "a"),
            (["one\n", "\ntwo"], ["\n\n"], "one"),
            (["no stop here"], ["###"], "no stop here"),
            (["ends with a partial #", "#"], ["###"], "ends with a partial ##"),
            ([], ["x"], ""),
        ],
    )
    def test_output_ends_before_the_first_stop_string(self, pieces: list[str], stop: list[str], expected: str) -> None:
        assert "".join(truncate_at_stop(pieces, stop)) == expected

    def test_only_a_possible_start_of_a_stop_string_is_held_back(self) -> None:
        assert list(truncate_at_stop(["abc", "def", "g"], ["xyz"])) == ["abc", "def", "g"]
        assert list(truncate_at_stop(["ab\n", "c\n", "\nd"], ["\n\n"])) == ["ab", "\nc"]

    def test_stops_consuming_pieces_after_the_stop_string(self) -> None:
        consumed = []

        def pieces():
            for piece in ["a", "STOP", "b", "c"]:
                consumed.append(piece)
                yield piece

        assert "".join(truncate_at_stop(pieces(), ["STOP"])) == "a"
        assert consumed == ["a", "STOP"]
