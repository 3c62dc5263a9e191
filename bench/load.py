"""Load on the HTTP server (loopback only, bounded): search-only and chat throughput and latency, and search
latency while a large upload is ingested in the background.

    python bench/load.py --clients 8 --seconds 20 --chat-requests 6 --out bench/results/server_load.json

The server runs in this process under uvicorn (its own threads) with the bundled embedder; chat uses the default
model from the settings (the bundled SmolLM2-135M on CPU) unless --fake-llm is given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from _common import RESULTS_DIR, git_state, loadavg, machine, percentiles, print_table, write_json  # noqa: E402

from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.server import create_app  # noqa: E402
from ragtune.settings import load_settings  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "handbook"
QUERIES = ["refund window for enterprise plans", "how often rotate API keys", "hotel limit per night in Europe",
           "who approves refunds", "年假有多少天", "onboarding first week", "travel booking rules", "security incident"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _drive(url: str, key: str, clients: int, seconds: float, make: Any, limit: int | None = None) -> dict:
    """``clients`` concurrent loops sending requests from ``make(i)`` for ``seconds`` (or ``limit`` requests)."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as http:
        async def loop(worker: int) -> None:
            nonlocal errors, sent
            while time.perf_counter() < deadline and (limit is None or sent < limit):
                sent += 1
                method, path, body = make(sent)
                started = time.perf_counter()
                response = await http.request(method, path, json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += response.status_code >= 400

        started = time.perf_counter()
        await asyncio.gather(*(loop(i) for i in range(clients)))
        wall = time.perf_counter() - started
    return {"requests": len(latencies), "errors": errors, "seconds": round(wall, 2),
            "throughput_rps": round(len(latencies) / wall, 2),
            "latency_ms": {**percentiles(latencies), "p99": round(float(np.percentile(latencies, 99)), 3)}}


def _search(i: int) -> tuple[str, str, dict]:
    return "POST", "/v1/kbs/handbook/search", {"query": random.choice(QUERIES), "k": 5}


def _chat(i: int) -> tuple[str, str, dict]:
    return "POST", "/v1/chat/completions", {"model": "kb:handbook", "max_tokens": 48,
                                            "messages": [{"role": "user", "content": random.choice(QUERIES) + "?"}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--chat-clients", type=int, default=2)
    parser.add_argument("--chat-requests", type=int, default=6)
    parser.add_argument("--upload-files", type=int, default=150, help="files in the background upload")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "server_load.json")
    args = parser.parse_args()
    random.seed(0)

    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="ragtune-load-"))
    with KnowledgeBase.open(work / "handbook", create=True) as kb:
        kb.ingest(EXAMPLES)
    settings = load_settings(server_db=str(work / "server.db"), rate_limit_per_minute=0)
    app = create_app(kb_root=work, settings=settings)
    state = app.state.server
    key = state.keys.create("*", "admin")[0]
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    httpx.post(f"{url}/v1/kbs/handbook/search", json={"query": "warm up"}, headers={"Authorization": f"Bearer {key}"})

    results: dict[str, Any] = {"benchmark": "server_load", "machine": machine(), "git": git_state(),
                               "load_before": loadavg(), "clients": args.clients}
    results["search_idle"] = asyncio.run(_drive(url, key, args.clients, args.seconds, _search))

    # A large upload, ingested by the background job while searches continue.
    body = [("files", (f"bulk{i:03d}.txt", (f"Bulk record {i} about procurement topic {i % 17}. " * 120).encode(),
                       "text/plain")) for i in range(args.upload_files)]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as http:
        http.post("/v1/kbs", json={"name": "bulk"})
        job_id = http.post("/v1/kbs/bulk/documents", files=body).json()["job"]["id"]
        while http.get(f"/v1/kbs/bulk/jobs/{job_id}").json()["status"] == "queued":
            time.sleep(0.05)
        results["search_during_ingestion"] = asyncio.run(_drive(url, key, args.clients, args.seconds, _search))
        job = http.get(f"/v1/kbs/bulk/jobs/{job_id}").json()
        results["ingestion_job_during_measurement"] = {k: job[k] for k in ("status", "files_done", "files_total")}
        if job["status"] not in ("running", "done"):
            print("warning: the ingestion job was not running during the measurement", file=sys.stderr)
    idle, busy = results["search_idle"]["latency_ms"]["p99"], results["search_during_ingestion"]["latency_ms"]["p99"]
    results["search_p99_ratio_ingesting_vs_idle"] = round(busy / idle, 2)

    results["chat_default_model"] = asyncio.run(
        _drive(url, key, args.chat_clients, 600, _chat, limit=args.chat_requests))
    results["chat_model"] = state.kbs.get("handbook").llm.name
    results["load_after"] = loadavg()
    server.should_exit = True
    thread.join(30)

    rows = [[name, r["requests"], r["errors"], r["throughput_rps"], r["latency_ms"]["p50"], r["latency_ms"]["p99"]]
            for name, r in results.items() if isinstance(r, dict) and "latency_ms" in r]
    print_table(rows, ["scenario", "requests", "errors", "req/s", "p50 ms", "p99 ms"])
    print(f"search p99 while ingesting / idle: {results['search_p99_ratio_ingesting_vs_idle']}")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
