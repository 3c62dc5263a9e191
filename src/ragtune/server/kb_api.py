"""Knowledge-base management: create/list/delete KBs, upload/list/delete documents, search, jobs, feedback."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from ragtune.errors import ConfigError, FilterError, RagtuneError, StoreError
from ragtune.guard.acl import parse_groups
from ragtune.guard.audit import ACTIONS, parse_time
from ragtune.rag.answer_json import score_kind
from ragtune.server.auth import authorize
from ragtune.server.errors import ApiError
from ragtune.server.keys import ALL_KBS
from ragtune.server.knowledge_bases import NAME_PATTERN
from ragtune.server.openai_api import display_name, source_json
from ragtune.server.state import Key, State
from ragtune.server.uploads import UploadError, accepted_extensions
from ragtune.store.filters import validate_filter

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["Knowledge bases"])

KbName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64, description="Knowledge base name.")]
DocId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$", description="Document id.")]
JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$", description="Job id.")]


class CreateKb(BaseModel):
    name: str = Field(pattern=NAME_PATTERN, max_length=64, examples=["handbook"])
    embedder: str | None = Field(None, max_length=200, description="Embedding model; default: the server's.")


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(5, ge=1, le=100)
    mode: Literal["hybrid", "dense", "sparse", "graph", "auto"] = Field(
        "hybrid", description="graph: hybrid fused with a walk of the KB's knowledge graph; auto: the router picks "
        "(its decision is in the response's route).")
    filter: dict[str, Any] | None = Field(None, examples=[{"source_type": "md", "page_number": {"$gte": 2}}])


class AclRequest(BaseModel):
    groups: list[str] | None = Field(
        None, max_length=100, examples=[["hr", "legal"]],
        description="The document's access groups ('*': everyone); null or [] returns it to the KB's acl_default.")


class FeedbackRequest(BaseModel):
    answer_id: str = Field(min_length=1, max_length=100, description="The answer_id of a kb: chat completion.")
    rating: Literal["up", "down"]
    corrected_answer: str | None = Field(None, max_length=20_000)
    comment: str | None = Field(None, max_length=5_000)
    kb: str | None = Field(None, pattern=NAME_PATTERN, max_length=64,
                           description="The knowledge base that answered (found from the answer id when left out).")


def _kb_json(state: Any, name: str) -> dict[str, Any]:
    stats = state.kbs.get(name).stats()
    return {"name": name, "model": f"kb:{name}", "documents": stats["documents"], "failed": stats["failed"],
            "chunks": stats["chunks"], "embedder": stats["embedder"]}


@router.get("/kbs", summary="Knowledge bases this key may read")
def list_kbs(state: State, key: Key) -> dict[str, Any]:
    return {"data": [_kb_json(state, name) for name in state.kbs.names() if key.allows(name, "reader")]}


@router.post("/kbs", status_code=201, summary="Create a knowledge base (admin)")
def create_kb(body: CreateKb, state: State, key: Key) -> dict[str, Any]:
    authorize(key, body.name, "admin")
    try:
        state.kbs.create(body.name, body.embedder)
    except RagtuneError as exc:
        raise ApiError(400, str(exc), code="invalid_kb") from None
    return _kb_json(state, body.name)


@router.get("/kbs/{name}", summary="A knowledge base's statistics")
def get_kb(name: KbName, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "reader")
    return {**_kb_json(state, name), "jobs_pending": len([j for j in state.jobs.list(name)
                                                          if j.status in ("queued", "running")])}


@router.delete("/kbs/{name}", summary="Delete a knowledge base and everything in it (admin)")
def delete_kb(name: KbName, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "admin")
    state.jobs.forget_kb(name)
    state.kbs.delete(name)
    return {"name": name, "deleted": True}


def _readable(kb: Any, key: Any, document_id: str, name: str) -> Any:
    """The document's record, or 404 when it does not exist or the key's groups may not read it (the same answer
    either way, so a key cannot learn which hidden documents exist)."""
    record = kb.store.document(document_id)
    if record is None or not kb.can_read(record, key.groups):
        raise ApiError(404, f"no document {document_id!r} in {name!r}", code="document_not_found")
    return record


@router.get("/kbs/{name}/documents", summary="Documents of a knowledge base (those the key's groups may read)")
def list_documents(name: KbName, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "reader")
    kb = state.kbs.get(name)
    return {"data": [
        {"id": d.id, "name": display_name(kb, d.uri), "source_type": d.source_type, "status": d.status,
         "error": d.error, "chunks": d.chunk_count, "size": d.size, "version": d.version, "title": d.title,
         "updated_at": d.updated_at, "groups": kb.document_groups(d),
         "flagged_chunks": d.metadata.get("injection_flagged", 0)}
        for d in kb.documents() if kb.can_read(d, key.groups)
    ]}


@router.post(
    "/kbs/{name}/documents", status_code=202, summary="Upload documents; they are ingested by a background job",
    description=f"Multipart field `files` (one or more). Accepted: {', '.join(accepted_extensions())}; the content "
    "must match the extension. A .zip is unpacked (supported members only). Returns the job to poll.",
)
def upload_documents(
    name: KbName, state: State, key: Key, files: Annotated[list[UploadFile], File()],
    groups: Annotated[str | None, Form(max_length=2000, description="Access groups of the uploaded documents, "
                                       "comma-separated (default: the key's groups, else the KB's acl_default)."
                                       )] = None,
) -> Any:
    authorize(key, name, "writer")
    state.kbs.get(name)  # 404 before storing anything
    acl = _upload_groups(key, groups)
    area = state.kbs.uploads(name)
    saved, rejected = [], []
    first_error: UploadError | None = None
    for upload in files:
        try:
            result = area.save(upload.filename or "", upload.file)
        except UploadError as exc:
            first_error = first_error or exc
            rejected.append({"name": upload.filename, "error": str(exc), "code": exc.code})
            continue
        saved.append(result)
    if not saved:
        assert first_error is not None
        raise ApiError(first_error.status, str(first_error), code=first_error.code)
    job = state.jobs.submit(name, [p for s in saved for p in s.paths], acl=acl)
    state.metrics.jobs_pending.set(state.jobs.pending())
    return {"job": job.to_dict(), "accepted": [{"name": s.name, "files": len(s.paths), "skipped": s.skipped}
                                               for s in saved], "rejected": rejected}


def _upload_groups(key: Any, groups: str | None) -> list[str] | None:
    """The groups uploaded documents get: as asked (within the key's own groups when it has some), else the key's."""
    try:
        asked = parse_groups(groups)
    except ConfigError as exc:
        raise ApiError(400, str(exc), code="invalid_groups") from None
    if key.groups is None:
        return asked
    if asked is None:
        return list(key.groups)
    outside = sorted(set(asked) - set(key.groups))
    if outside:
        # A key must not hide documents from itself or open them to groups it does not belong to.
        raise ApiError(403, f"this API key may only give documents its own groups ({', '.join(key.groups)}); "
                       f"not {', '.join(outside)}", "permission_error", "groups_not_allowed")
    return asked


@router.delete("/kbs/{name}/documents/{document_id}", summary="Delete a document and its uploaded file (writer)")
def delete_document(name: KbName, document_id: DocId, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "writer")
    kb = state.kbs.get(name)
    record = _readable(kb, key, document_id, name)
    if not kb.delete(document_id):
        raise ApiError(404, f"no document {document_id!r} in {name!r}", code="document_not_found")
    stored = state.kbs.uploads(name).owns(record.uri)
    if stored is not None:
        stored.unlink(missing_ok=True)
    return {"id": document_id, "deleted": True}


@router.get("/kbs/{name}/documents/{document_id}", summary="A document's record")
def get_document(name: KbName, document_id: DocId, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "reader")
    kb = state.kbs.get(name)
    d = _readable(kb, key, document_id, name)
    return {"id": d.id, "name": display_name(kb, d.uri), "source_type": d.source_type, "status": d.status,
            "error": d.error, "chunks": d.chunk_count, "size": d.size, "version": d.version, "title": d.title,
            "metadata": d.metadata, "updated_at": d.updated_at, "groups": kb.document_groups(d)}


@router.put("/kbs/{name}/documents/{document_id}/acl", summary="Set a document's access groups (admin)")
def set_document_acl(name: KbName, document_id: DocId, body: AclRequest, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "admin")
    kb = state.kbs.get(name)
    _readable(kb, key, document_id, name)
    try:
        kb.set_acl(document_id, body.groups, actor=key.actor)
    except ConfigError as exc:
        raise ApiError(400, str(exc), code="invalid_groups") from None
    record = _readable(kb, key, document_id, name)
    return {"id": document_id, "groups": kb.document_groups(record), "own_groups": record.metadata.get("acl")}


@router.get("/kbs/{name}/documents/{document_id}/file", summary="Download a document's uploaded file")
def document_file(name: KbName, document_id: DocId, state: State, key: Key) -> Any:
    authorize(key, name, "reader")
    kb = state.kbs.get(name)
    d = kb.store.document(document_id)
    if d is not None and not kb.can_read(d, key.groups):
        d = None
    stored = state.kbs.uploads(name).owns(d.uri) if d is not None else None
    if d is None or stored is None or not stored.is_file():
        raise ApiError(404, f"no uploaded file for document {document_id!r} in {name!r}", code="file_not_found")
    return FileResponse(stored, filename=stored.name)


@router.post("/kbs/{name}/search", summary="Search a knowledge base (hybrid, dense or sparse; with a filter)")
def search(name: KbName, body: SearchRequest, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "reader")
    kb = state.kbs.get(name)
    try:
        spec = validate_filter(body.filter)
        result = kb.retrieve(body.query, body.k, mode=body.mode, filter=spec, groups=key.groups, actor=key.actor)
    except FilterError as exc:
        raise ApiError(400, str(exc), code="invalid_filter") from None
    except StoreError as exc:
        raise ApiError(409, str(exc), code="store_error") from None
    except ConfigError as exc:  # mode graph on a KB without a graph
        raise ApiError(400, str(exc), code="invalid_mode") from None
    return {"query": body.query, "mode": body.mode,
            **({"route": result.route.to_dict()} if result.route else {}),
            **({"dates": result.dates} if result.dates else {}),
            "hits": [source_json(name, kb, h, i, set()) | {"text": h.text, "score_kind": score_kind(h, body.mode),
                                                          "metadata": h.meta.model_dump(exclude={"source"})}
                     | ({"path": h.path} if h.path else {}) for i, h in enumerate(result.hits, 1)]}


@router.get("/kbs/{name}/jobs", summary="Recent ingestion jobs of a knowledge base")
def list_jobs(name: KbName, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "reader")
    return {"data": [j.to_dict() for j in state.jobs.list(name)]}


@router.get("/jobs", summary="Recent ingestion jobs of every knowledge base this key may read, newest first")
def list_all_jobs(state: State, key: Key, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    scoped = None if key.kb == ALL_KBS else key.kb
    return {"data": [j.to_dict() for j in state.jobs.list(scoped, limit=limit) if key.allows(j.kb, "reader")]}


@router.get("/jobs/{job_id}", summary="One ingestion job, whichever knowledge base it is for")
def get_any_job(job_id: JobId, state: State, key: Key) -> dict[str, Any]:
    job = state.jobs.get(job_id)
    if job is None or not key.allows(job.kb, "reader"):
        raise ApiError(404, f"no job {job_id!r} this key can read — GET /v1/jobs lists them", code="job_not_found")
    return job.to_dict()


@router.get("/me", summary="The calling API key: its id, role and knowledge base ('*': all)")
def whoami(key: Key) -> dict[str, Any]:
    return {"id": key.id, "role": key.role, "kb": key.kb, "name": key.name}


@router.get("/kbs/{name}/jobs/{job_id}", summary="One ingestion job: status, progress, per-file errors")
def get_job(name: KbName, job_id: JobId, state: State, key: Key) -> dict[str, Any]:
    authorize(key, name, "reader")
    job = state.jobs.get(job_id)
    if job is None or job.kb != name:
        raise ApiError(404, f"no job {job_id!r} in {name!r}", code="job_not_found")
    return job.to_dict()


@router.post("/feedback", status_code=201, summary="Rate an answer 👍/👎, optionally with a corrected answer")
def feedback(body: FeedbackRequest, state: State, key: Key) -> dict[str, Any]:
    candidates = [body.kb] if body.kb else [n for n in state.kbs.names() if key.allows(n, "reader")]
    for name in candidates:
        authorize(key, name, "reader")
        store = state.kbs.feedback(name)
        if store.has_answer(body.answer_id):
            feedback_id = store.add(body.answer_id, body.rating, corrected_answer=body.corrected_answer,
                                    comment=body.comment)
            state.metrics.feedback.labels(name, body.rating).inc()
            return {"id": feedback_id, "kb": name, "answer_id": body.answer_id, "rating": body.rating}
    raise ApiError(404, f"no answer {body.answer_id!r} in the knowledge bases this key can read — send the "
                   "answer_id of a kb: chat completion", code="answer_not_found")


@router.get("/kbs/{name}/feedback/export", summary="Feedback as JSONL, personal data redacted (writer)",
            response_class=Response, responses={200: {"content": {"application/x-ndjson": {}}}})
def export_feedback(name: KbName, state: State, key: Key) -> Response:
    """One JSON line per rating: only answers whose every source the key's groups may read; recorded in the
    audit log."""
    authorize(key, name, "writer")
    rows = state.kbs.get(name).feedback_rows(groups=key.groups, actor=key.actor)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return Response(data, media_type="application/x-ndjson")


@router.get("/audit", summary="The audit log of a knowledge base (admin)")
def audit_log(
    state: State, key: Key,
    kb: Annotated[str, Query(pattern=NAME_PATTERN, max_length=64, description="Knowledge base name.")],
    since: Annotated[str | None, Query(max_length=40, description="ISO date/time or epoch seconds.")] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    actor: Annotated[str | None, Query(max_length=100, description="e.g. key:1a2b3c4d")] = None,
    action: Annotated[Literal["search", "answer", "export", "acl"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    authorize(key, kb, "admin")
    base = state.kbs.get(kb)
    try:
        entries = base.audit_log().entries(since=parse_time(since), until=parse_time(until), actor=actor,
                                           action=action, limit=limit)
    except ConfigError as exc:
        raise ApiError(400, str(exc), code="invalid_time") from None
    return {"kb": kb, "actions": list(ACTIONS), "data": [e.to_dict() for e in entries]}
