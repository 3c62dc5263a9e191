"""Prometheus metrics of one server instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """Request latency, ingestion and answer counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "ragtune_http_request_duration_seconds", "HTTP request latency by route, method and status.",
            ["method", "route", "status"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.ingest_jobs = Counter("ragtune_ingest_jobs_total", "Ingestion jobs finished, by outcome.",
                                   ["kb", "status"], registry=self.registry)
        self.ingest_files = Counter("ragtune_ingest_files_total", "Files processed by ingestion jobs, by outcome.",
                                    ["kb", "outcome"], registry=self.registry)
        self.ingest_chunks = Counter("ragtune_ingest_chunks_total", "Chunks stored by ingestion jobs.", ["kb"],
                                     registry=self.registry)
        self.jobs_pending = Gauge("ragtune_ingest_jobs_pending", "Ingestion jobs queued or running.",
                                  registry=self.registry)
        self.answers = Counter("ragtune_answers_total", "Knowledge-base answers, by outcome.", ["kb", "outcome"],
                               registry=self.registry)
        self.feedback = Counter("ragtune_feedback_total", "Feedback received, by rating.", ["kb", "rating"],
                                registry=self.registry)
        self.rate_limited = Counter("ragtune_rate_limited_total", "Requests refused by the per-key rate limit.",
                                    registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
