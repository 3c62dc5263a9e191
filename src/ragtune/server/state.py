"""What every request handler shares: the knowledge bases, the job queue, keys, metrics and the pass-through LLM."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from ragtune.llm.base import LLM
from ragtune.server.auth import Authenticator, bearer
from ragtune.server.jobs import JobQueue
from ragtune.server.keys import ApiKey, KeyStore
from ragtune.server.knowledge_bases import KnowledgeBases
from ragtune.server.metrics import Metrics
from ragtune.settings import Settings


@dataclass
class ServerState:
    settings: Settings
    kbs: KnowledgeBases
    jobs: JobQueue
    keys: KeyStore | None
    auth: Authenticator
    metrics: Metrics
    llm: LLM | None = None
    #: The pass-through model's id in /v1/models: the configured name, the same before and after it loads.
    model_id: str = ""
    #: Loop runs (POST /v1/loop/run): a queue of their own, so a long run never holds up ingestion.
    loop_jobs: JobQueue | None = None
    _llm_lock: threading.Lock = field(default_factory=threading.Lock)

    def chat_llm(self) -> LLM:
        """The configured LLM that model names other than 'kb:NAME' go to, loaded on first use."""
        with self._llm_lock:
            if self.llm is None:
                from ragtune.llm.factory import load_llm

                s = self.settings
                self.llm = load_llm(s.llm, model=s.llm_model, base_url=s.llm_base_url, api_key=s.llm_api_key,
                                    adapter=s.llm_adapter, num_threads=s.num_threads)
            return self.llm


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def get_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> ApiKey:
    key = get_state(request).auth.identify(credentials)
    request.state.api_key = key
    return key


State = Annotated[ServerState, Depends(get_state)]
Key = Annotated[ApiKey, Depends(get_key)]
