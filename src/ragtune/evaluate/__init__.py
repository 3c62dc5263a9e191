"""Evaluation: retrieval metrics with trec_eval semantics, BEIR data sets, and the retrieval benchmark runner."""

from ragtune.evaluate.beir import BeirDataset, load_beir
from ragtune.evaluate.ir import evaluate, per_query

__all__ = ["BeirDataset", "evaluate", "load_beir", "per_query"]
