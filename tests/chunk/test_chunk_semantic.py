"""SemanticChunker with the bundled MiniLM: breakpoints fall between topics and the token budget holds."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.chunk import SemanticChunker, make_chunker
from ragtune.errors import ConfigError
from ragtune.text import split_sentences
from ragtune.types import Block, BlockType, Document

PASTA = [
    "Bring a large pot of salted water to a rolling boil.",
    "Add the spaghetti and stir so the noodles do not stick together.",
    "Cook the pasta for about nine minutes until it is al dente.",
    "Meanwhile, fry garlic in olive oil and add crushed tomatoes for the sauce.",
    "Drain the pasta and toss it with the tomato sauce.",
    "Serve the spaghetti with grated parmesan cheese and fresh basil.",
]
PLANETS = [
    "Jupiter is the largest planet in our solar system.",
    "Saturn is famous for its bright rings made of ice and rock.",
    "Mars has a thin atmosphere and two small moons.",
    "Venus is the hottest planet because of its thick carbon dioxide atmosphere.",
    "Neptune orbits the Sun farther out than any other planet.",
    "Mercury is the planet closest to the Sun.",
]


def _doc(text: str) -> Document:
    return Document.assemble([Block(type=BlockType.PARAGRAPH, text=p) for p in text.split("\n\n")],
                             source="mem.txt", source_type="txt")


@pytest.mark.integration
class TestSemanticChunker:
    def test_the_breakpoint_lands_between_two_topics(self, embedder):
        doc = _doc(" ".join(PASTA + PLANETS))
        chunks = SemanticChunker(chunk_size=512, chunk_overlap=0, embedder=embedder).split(doc)
        assert [c.text for c in chunks] == [" ".join(PASTA), " ".join(PLANETS)]

    def test_lower_percentiles_cut_more_often(self, embedder):
        doc = _doc(" ".join(PASTA + PLANETS))
        coarse = SemanticChunker(chunk_size=512, chunk_overlap=0, embedder=embedder).split(doc)
        fine = SemanticChunker(chunk_size=512, chunk_overlap=0, embedder=embedder, breakpoint_percentile=50).split(doc)
        assert len(fine) > len(coarse)
        boundary = doc.text.index(PLANETS[0])
        assert any(c.start == boundary for c in fine)

    def test_the_token_budget_holds_and_offsets_are_exact(self, embedder):
        chinese = "全职员工每年享有二十天带薪年假。病假每年最多十五天。"
        text = "\n\n".join([" ".join(PASTA * 3), " ".join(PLANETS * 3), chinese])
        doc = _doc(text)
        counter = embedder.token_counter()
        chunks = SemanticChunker(chunk_size=40, chunk_overlap=5, counter=counter, embedder=embedder).split(doc)
        assert len(chunks) > 4
        for chunk in chunks:
            assert doc.text[chunk.start : chunk.end] == chunk.text
            assert len(counter.spans(chunk.text)) <= 40
        # Nothing is lost: every sentence lies inside some chunk.
        for start, _ in split_sentences(doc.text):
            assert any(c.start <= start < c.end for c in chunks)

    def test_make_chunker_passes_the_embedder(self, embedder):
        chunker = make_chunker("semantic", chunk_size=128, chunk_overlap=0, embedder=embedder)
        assert isinstance(chunker, SemanticChunker) and chunker.embedder is embedder
        assert chunker.split(_doc("One sentence only."))[0].text == "One sentence only."


@pytest.mark.unit
def test_without_an_embedder_split_says_what_to_do():
    chunker = make_chunker("semantic", chunk_size=128, chunk_overlap=0)
    with pytest.raises(ConfigError, match="pass embedder="):
        chunker.split(_doc("A sentence. Another one."))


@pytest.mark.unit
def test_settings_are_validated_eagerly():
    with pytest.raises(ConfigError, match="breakpoint_percentile"):
        SemanticChunker(breakpoint_percentile=120)
    with pytest.raises(ConfigError, match="buffer_size"):
        SemanticChunker(buffer_size=-1)


class _TopicEmbedder:
    """Maps each sentence to the unit vector of the topic word it mentions; enough to test the breakpoint rule."""

    name, dim = "topics", 3
    topics = ("cats", "rockets", "taxes")

    def encode_documents(self, texts):
        rows = [[1.0 if topic in t.lower() else 0.0 for topic in self.topics] for t in texts]
        return np.array(rows, dtype=np.float32)


@pytest.mark.unit
def test_breakpoints_follow_the_percentile_rule():
    texts = ["cats purr", "cats nap", "cats play", "rockets fly", "rockets land", "taxes rise", "taxes fall"]
    chunker = SemanticChunker(embedder=_TopicEmbedder(), buffer_size=0, breakpoint_percentile=60)
    assert chunker.breakpoints(texts) == [3, 5]
    assert chunker.breakpoints(texts[:1]) == []
    doc = _doc(". ".join(t.capitalize() for t in texts) + ".")
    assert [c.text for c in chunker.split(doc)] == ["Cats purr. Cats nap. Cats play.", "Rockets fly. Rockets land.",
                                                    "Taxes rise. Taxes fall."]
