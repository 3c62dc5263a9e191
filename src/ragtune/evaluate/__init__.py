"""Evaluation: retrieval metrics with trec_eval semantics, BEIR data sets, RAG answer metrics and eval sets."""

from ragtune.evaluate.beir import BeirDataset, load_beir
from ragtune.evaluate.ir import evaluate, per_query
from ragtune.evaluate.rag import METRICS, evaluate_rag
from ragtune.evaluate.samples import RagSample, load_samples
from ragtune.evaluate.stats import PairedDifference, paired_bootstrap

__all__ = [
    "METRICS",
    "BeirDataset",
    "PairedDifference",
    "RagSample",
    "evaluate",
    "evaluate_rag",
    "load_beir",
    "load_samples",
    "paired_bootstrap",
    "per_query",
]
