"""Entity extraction without an LLM (spaCy for English, jieba for Chinese) and alias merging."""

from __future__ import annotations

import json

import pytest
from graph_fixtures import FIXTURES

from ragtune.errors import ConfigError
from ragtune.graph import EntityExtractor, entity_key

CASES = json.loads((FIXTURES / "entities.json").read_text(encoding="utf-8"))


class TestEntityKey:
    pytestmark = pytest.mark.unit

    @pytest.mark.parametrize("names", [
        ("Project Lumen", "the Lumen team", "LUMEN", "Lumen's", "Lumen", "lumen project"),
        ("FAC-22", "fac 22", "FAC_22", "Fac-22"),
        ("Wolfgang Schulz", "WolfgangSchulz", "wolfgang  schulz", "Wolfgang Schulz's"),
        ("星火项目", "星火", "“星火”"),
        ("华为公司", "华为"),
        ("ＦＡＣ－２２", "FAC-22"),  # full-width forms
    ])
    def test_aliases_share_one_key(self, names):
        keys = {entity_key(name) for name in names}
        assert len(keys) == 1 and "" not in keys, keys

    @pytest.mark.parametrize(("a", "b"), [("Lumen", "Lumina"), ("FAC-22", "FAC-23"), ("Ada Park", "Park Ada"),
                                          ("张伟", "张伟伟")])
    def test_different_things_keep_different_keys(self, a, b):
        assert entity_key(a) != entity_key(b)

    def test_noun_phrases_are_stemmed(self):
        assert entity_key("bread deliveries", "concept") == entity_key("bread delivery", "concept") != ""

    @pytest.mark.parametrize("name", ["", "  ", "A", "42", "the", "I'm", "The"])
    def test_nothing_left_is_no_key(self, name):
        assert entity_key(name) == ""


@pytest.mark.integration
class TestEntityExtractor:
    @pytest.mark.parametrize("case", CASES, ids=[c["text"][:30] for c in CASES])
    def test_fixture_entities_are_found(self, extractor, case):
        keys = {m.key for m in extractor.extract([case["text"]], [case["language"]])[0]}
        assert not [k for k in case["expect"] if k not in keys], keys
        assert not [k for k in case["absent"] if k in keys], keys

    def test_language_is_detected_when_not_given(self, extractor):
        english, chinese = extractor.extract(["Ada Park leads Project Lumen.", "张伟负责“星火”项目。"])
        assert {"adapark", "lumen"} <= {m.key for m in english}
        assert {"张伟", "星火"} <= {m.key for m in chinese}

    def test_mentions_of_one_entity_add_up(self, extractor):
        (mentions,) = extractor.extract(["Lumen ships in May. The Lumen team met Ada Park. Project Lumen is late."])
        lumen = next(m for m in mentions if m.key == "lumen")
        single = next(m for m in mentions if m.key == "adapark")
        assert lumen.weight > single.weight
        assert len([m for m in mentions if m.key == "lumen"]) == 1

    def test_kinds(self, extractor):
        (mentions,) = extractor.extract(["Bruno Diaz opened ticket FAC-22 about the bread delivery service."])
        kinds = {m.key: m.kind for m in mentions}
        assert kinds["fac22"] == "code"
        assert kinds["bread deliveri servic"] == "concept"
        assert kinds["brunodiaz"] in ("person", "name")

    def test_the_recogniser_types_names_when_asked(self):
        (mentions,) = EntityExtractor(ner=True).extract(["Bruno Diaz flew from Lisbon to meet Northwind Labs."])
        kinds = {m.key: m.kind for m in mentions}
        assert kinds["brunodiaz"] == "person" and kinds["lisbon"] == "place"

    def test_codes_inside_chinese_text(self, extractor):
        (mentions,) = extractor.extract(["零件FAC-31由华光金属公司生产，批次CX-7731已发货。"], ["zh"])
        assert {"fac31", "cx7731"} <= {m.key for m in mentions}

    def test_one_language_per_text(self, extractor):
        with pytest.raises(ConfigError, match="one language per text"):
            extractor.extract(["a", "b"], ["en"])

    def test_coarse_tags_match_the_attribute_ruler(self, extractor):
        # The extractor skips spaCy's attribute ruler (half the tagging time) and reads its table instead: every
        # token must be a noun or a proper noun exactly when the ruler says so, the word exceptions included
        # ("everyone" is tagged NN but is a pronoun). Other coarse tags are not needed (AUX and VERB may differ).
        import spacy

        from ragtune.graph.extract import SPACY_MODEL, _pos

        texts = [case["text"] for case in CASES if case["language"] == "en"] + [
            "Everyone asked Ada Park about something; nobody knew anything about the Lumen rollout in Berlin."]
        assert "attribute_ruler" not in extractor.nlp.pipe_names
        ruler = spacy.load(SPACY_MODEL, disable=["parser", "lemmatizer", "ner"])
        for fast, full in zip(extractor.nlp.pipe(texts), ruler.pipe(texts), strict=True):
            assert [(t.text, _noun(_pos(t))) for t in fast] == [(t.text, _noun(t.pos_)) for t in full]
        assert {_pos(t) for t in extractor.nlp(texts[-1]) if t.lower_ in ("everyone", "nobody")} == {"PRON"}

    def test_empty_text_has_no_entities(self, extractor):
        assert extractor.extract(["", "   "]) == [[], []]


def _noun(pos: str) -> str:
    return pos if pos in ("NOUN", "PROPN") else "-"


@pytest.mark.unit
def test_batch_size_is_validated():
    with pytest.raises(ConfigError, match="batch_size"):
        EntityExtractor(batch_size=0)
