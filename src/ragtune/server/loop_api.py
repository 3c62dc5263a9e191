"""The loop over HTTP: ``POST /v1/loop/run`` queues a loop run as a background job, ``GET /v1/loop`` shows the
stages' champions, the feedback waiting, every decision with its metrics, and the loop's jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ragtune.errors import RagtuneError
from ragtune.loop.workspace import Workspace
from ragtune.server.auth import authorize
from ragtune.server.errors import ApiError
from ragtune.server.jobs import Job
from ragtune.server.knowledge_bases import NAME_PATTERN, KnowledgeBases
from ragtune.server.state import Key, State

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["Loop"])

StageName = Literal["embedder", "reranker", "llm", "demonstrations"]
# Decision fields the page and clients read; the per-question comparison stays in 'ragtune loop history --json'.
_DECISION_FIELDS = ("key", "kind", "run", "stage", "time", "verdict", "why", "champion", "challenger", "target",
                    "guards", "metrics", "data", "seed", "evalset_sha256", "bootstrap", "seconds")


class LoopRunRequest(BaseModel):
    kb: str = Field(pattern=NAME_PATTERN, max_length=64, examples=["handbook"])
    stages: list[StageName] | None = Field(None, max_length=4, description="Only these of the enabled stages "
                                           "(default: every enabled stage).")


def loop_runner(kbs: KnowledgeBases) -> Callable[[Job, Callable[[str, int, int], None]], dict[str, Any]]:
    """The job runner of loop runs: the KB opened for the job alone; promotions reach requests by the reload of
    :meth:`KnowledgeBases.get`."""
    from ragtune.loop import run_loop

    def run(job: Job, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
        base = kbs.open_for_job(job.kb)
        try:
            record = run_loop(base, stages=job.files or None, on_progress=progress)
        finally:
            base.close()
        return {"run": record["run"], "stages": {
            name: {"outcome": phase.get("outcome"), "champion": phase.get("champion"),
                   "challenger": phase.get("challenger"), "why": phase.get("verdict", {}).get("reasons", [])}
            for name, phase in record["phases"].items()}}

    return run


@router.post("/loop/run", status_code=202, summary="Run the loop of a knowledge base as a background job (admin)")
def run(body: LoopRunRequest, state: State, key: Key) -> dict[str, Any]:
    authorize(key, body.kb, "admin")
    if state.loop_jobs is None:
        raise ApiError(503, "this server runs no loop jobs", code="loop_unavailable")
    base = state.kbs.get(body.kb)
    if not Workspace(base.path).exists():
        raise ApiError(409, f"the loop of {body.kb!r} is not set up — run 'ragtune loop init --kb {base.path.name}' "
                       "on the server first (it freezes the eval set)", code="loop_not_initialised")
    busy = [j for j in state.loop_jobs.list(body.kb) if j.status in ("queued", "running")]
    if busy:
        raise ApiError(409, f"a loop run of {body.kb!r} is already {busy[0].status} (job {busy[0].id}) — follow it "
                       "with GET /v1/loop", code="loop_busy")
    job = state.loop_jobs.submit(body.kb, list(body.stages or []), kind="loop")
    return {"job": job.to_dict()}


@router.get("/loop", summary="The loop of a knowledge base: champions, feedback, decisions, jobs")
def loop_state(
    state: State, key: Key,
    kb: Annotated[str, Query(pattern=NAME_PATTERN, max_length=64, description="Knowledge base name.")],
) -> dict[str, Any]:
    from ragtune.loop import loop_history, loop_status

    authorize(key, kb, "reader")
    base = state.kbs.get(kb)
    jobs = [j.to_dict() for j in state.loop_jobs.list(kb, limit=10)] if state.loop_jobs is not None else []
    if not Workspace(base.path).exists():
        counts = state.kbs.feedback(kb).counts()
        return {"kb": kb, "initialised": False, "feedback": counts, "jobs": jobs, "can_run": False,
                "hint": "run 'ragtune loop init --kb PATH' on the server to freeze an eval set and start the loop"}
    try:
        status = loop_status(base)
        history = [{k: v for k, v in entry.items() if k in _DECISION_FIELDS} for entry in loop_history(base)]
    except RagtuneError as exc:
        raise ApiError(409, str(exc), code="loop_error") from None
    status["kb"] = kb  # the name, not the server's path
    return {**status, "initialised": True, "history": history, "jobs": jobs,
            "can_run": key.allows(kb, "admin") and state.loop_jobs is not None}
