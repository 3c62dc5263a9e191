"""Answer generation: prompts, numbered sources, claim-level verification, extractive answers."""

from ragtune.rag.claims import ClaimCheck, ClaimJudge, LexicalJudge, default_judge, split_claims
from ragtune.rag.pipeline import AnswerEvent, RagPipeline
from ragtune.rag.verify import AnswerVerifier, VerifiedAnswer, verify_answer

__all__ = [
    "AnswerEvent", "AnswerVerifier", "ClaimCheck", "ClaimJudge", "LexicalJudge", "RagPipeline", "VerifiedAnswer",
    "default_judge", "split_claims", "verify_answer",
]
