"""Answer generation: prompts, context packing, cited answers and citation verification."""

from ragtune.rag.citations import verify_citations
from ragtune.rag.pipeline import AnswerEvent, RagPipeline

__all__ = ["AnswerEvent", "RagPipeline", "verify_citations"]
