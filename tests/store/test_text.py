"""Tests for the BM25 analyzer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ragtune.store.text import CHINESE_STOPWORDS, ENGLISH_STOPWORDS, tokenize

pytestmark = pytest.mark.unit


class TestTokenizeEnglish:
    def test_lowercases_and_stems(self) -> None:
        assert tokenize("Running RUNS runner") == ["run", "run", "runner"]

    def test_running_and_runs_share_a_stem(self) -> None:
        assert tokenize("running") == tokenize("runs")

    def test_drops_stopwords(self) -> None:
        assert tokenize("the effect of the drug is not an artefact") == ["effect", "drug", "artefact"]
        assert all(word not in tokenize(word) for word in ENGLISH_STOPWORDS)

    def test_nfkc_folds_fullwidth_and_ligatures(self) -> None:
        assert tokenize("Ｆｕｌｌｗｉｄｔｈ ﬁle") == tokenize("fullwidth file")

    def test_hyphenated_words_split_like_lucene(self) -> None:
        assert tokenize("COVID-19 vaccines") == ["covid", "19", "vaccin"]
        assert tokenize("covid 19") == tokenize("Covid-19")

    def test_keeps_decimals_and_inner_apostrophes(self) -> None:
        assert tokenize("2.5 mg, 1,000 cells; don't") == ["2.5", "mg", "1,000", "cell", "don't"]

    def test_possessive_is_stemmed_away(self) -> None:
        assert tokenize("the patient's") == ["patient"]

    def test_punctuation_and_underscores_separate_words(self) -> None:
        assert tokenize("(p<0.05); a_b / c|d") == ["p", "0.05", "b", "c", "d"]

    @pytest.mark.parametrize("text", ["", "   ", "!!! ... ---", "the of and"])
    def test_nothing_to_index(self, text: str) -> None:
        assert tokenize(text) == []

    def test_non_latin_scripts_are_words(self) -> None:
        assert tokenize("Привет мир") == ["привет", "мир"]


class TestTokenizeChinese:
    def test_segments_with_jieba(self) -> None:
        tokens = tokenize("我爱北京天安门")
        assert "北京" in tokens
        assert "天安门" in tokens

    def test_search_mode_emits_subwords(self) -> None:
        tokens = tokenize("中华人民共和国")
        assert {"中华人民共和国", "共和国", "人民"} <= set(tokens)

    def test_drops_stopwords_and_punctuation(self) -> None:
        tokens = tokenize("这是我们的研究，结果很好。")
        assert tokens
        assert not set(tokens) & CHINESE_STOPWORDS
        assert "，" not in tokens
        assert "。" not in tokens

    def test_mixed_scripts_keep_english_analysis(self) -> None:
        tokens = tokenize("我们使用BM25检索Running文档")
        assert "bm25" in tokens
        assert "run" in tokens
        assert "检索" in tokens

    def test_fullwidth_punctuation_is_normalised_away(self) -> None:
        assert tokenize("北京（中国）") == tokenize("北京 中国")

    def test_jieba_initialisation_is_quiet(self) -> None:
        code = "from ragtune.store.text import tokenize; assert tokenize('北京欢迎你')"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stderr == ""
        assert result.stdout == ""
