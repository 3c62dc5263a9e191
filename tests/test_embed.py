"""Embedders: per-model prefixes, normalised vectors, and the multilingual backend."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.embed import load_embedder, normalise, prefixes_for
from ragtune.errors import ConfigError


@pytest.mark.unit
@pytest.mark.parametrize(
    ("model", "query", "passage"),
    [
        ("intfloat/multilingual-e5-small", "query: ", "passage: "),
        ("BAAI/bge-small-en-v1.5", "Represent this sentence for searching relevant passages: ", ""),
        ("BAAI/bge-large-zh-v1.5", "为这个句子生成表示以用于检索相关文章：", ""),
        ("all-MiniLM-L6-v2", "", ""),
    ],
)
def test_prefixes_are_chosen_per_model(model, query, passage):
    assert prefixes_for(model) == (query, passage)


@pytest.mark.unit
def test_normalise_gives_unit_rows_and_keeps_zero_rows():
    out = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32 and np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


@pytest.mark.integration
def test_minilm_vectors_are_normalised_and_meaningful(embedder):
    docs = embedder.encode_documents(["API keys rotate every 90 days.", "The canteen serves lunch at noon."])
    query = embedder.encode_queries(["how often do keys rotate"])[0]
    assert docs.shape == (2, 384) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert docs[0] @ query > docs[1] @ query


@pytest.mark.integration
def test_multilingual_e5_handles_chinese():
    e5 = load_embedder("multilingual-e5-small")
    docs = e5.encode_documents(["全职员工每年享有二十天带薪年假。", "API keys must be rotated every 90 days."])
    query = e5.encode_queries(["年假有几天"])[0]
    assert docs.shape == (2, 384) and docs[0] @ query > docs[1] @ query


@pytest.mark.integration
def test_a_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="could not be loaded"):
        load_embedder(str(tmp_path / "no-such-model"))


@pytest.mark.integration
def test_hf_token_counter_spans_match_the_embedder_tokenizer(embedder):
    counter = embedder.token_counter()
    text = "Rotating keys every 90 days, 你好世界. " * 200
    spans = counter.spans(text)
    from transformers import AutoTokenizer

    from ragtune.embed.sentence_transformers import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))  # the embedder's, either backend
    ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
    assert len(spans) == len(ids)
    assert all(text[s:e].strip() for s, e in spans)
