"""Two `ragtune serve` processes on one Postgres store under load (searches, feedback and uploads sent to both), with
the server running a large ingestion job SIGKILLed mid-job: the other resumes it; afterwards nothing is lost or
doubled — every job ran to the end once, every accepted rating is stored once, every document is whole.

    flock /tmp/ragtune-heavy.lock nice -n 5 .venv/bin/python bench/store_servers.py --seconds 60

The servers are real processes (so one can be killed) on loopback; the load is bench/load.py's client loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, git_state, loadavg, percentiles, print_table, write_json  # noqa: E402
from _engines import postgres  # noqa: E402
from load import QUERIES, _free_port  # noqa: E402

from ragtune.feedback import FeedbackStore  # noqa: E402
from ragtune.kb import KnowledgeBase  # noqa: E402
from ragtune.server.keys import KeyStore  # noqa: E402
from ragtune.store.postgres import lock_key  # noqa: E402
from ragtune.types import Answer  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "handbook"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def serve(root: Path, port: int, store: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAGTUNE_RATE_LIMIT_PER_MINUTE": "0"}
    return subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--kb-root", str(root), "--port", str(port),
                             "--store", store], env=env, cwd=root, stdout=subprocess.DEVNULL,
                            stderr=open(root / f"server-{port}.log", "w"))  # noqa: SIM115


def ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server at {url} exited")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the server at {url} did not start")


def job_runner(url: str, job_id: str) -> int | None:
    """The process id of the server whose connection holds the job's lock (from its application_name)."""
    import psycopg

    key = lock_key("job", job_id) & 0xFFFFFFFFFFFFFFFF  # pg_locks shows a bigint key as two 32-bit halves
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::bigint::oid"
            " AND l.objid = %s::bigint::oid AND l.objsubid = 1", (key >> 32, key & 0xFFFFFFFF)).fetchone()
    if row is None or not row[0].startswith("ragtune["):
        return None
    return int(row[0][len("ragtune["):-1])


class Load:
    """Clients sending searches, ratings and small uploads to both servers, recording what each got back."""

    def __init__(self, urls: list[str], key: str, answers: list[str]) -> None:
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {key}"}
        self.answers = answers
        self.latency: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.ratings: list[dict[str, Any]] = []
        self.jobs: list[str] = []
        self.uploaded: list[str] = []
        self.sent = 0

    async def run(self, clients: int, seconds: float, phase: str) -> None:
        deadline = time.perf_counter() + seconds
        async with httpx.AsyncClient(headers=self.headers, timeout=120) as http:
            async def loop(worker: int) -> None:
                rng = random.Random(worker * 7919 + len(phase))
                while time.perf_counter() < deadline:
                    url = rng.choice(self.urls)
                    kind = rng.choices(["search", "feedback", "upload"], [0.8, 0.15, 0.05])[0]
                    self.sent += 1
                    started = time.perf_counter()
                    try:
                        if kind == "search":
                            response = await http.post(f"{url}/v1/kbs/handbook/search",
                                                       json={"query": rng.choice(QUERIES), "k": 5})
                        elif kind == "feedback":
                            body = {"answer_id": rng.choice(self.answers), "rating": rng.choice(["up", "down"]),
                                    "kb": "handbook", "comment": f"{phase}-{worker}-{self.sent}"}
                            response = await http.post(f"{url}/v1/feedback", json=body)
                            if response.status_code == 201:
                                self.ratings.append(body)
                        else:
                            name = f"load-{phase}-{worker}-{self.sent}.txt"
                            text = f"Upload {name} about procurement rule {self.sent % 97}. " * 20
                            response = await http.post(f"{url}/v1/kbs/handbook/documents",
                                                       files=[("files", (name, text.encode(), "text/plain"))])
                            if response.status_code == 202:
                                self.jobs.append(response.json()["job"]["id"])
                                self.uploaded.append(name)
                    except httpx.HTTPError:
                        self.errors[f"{phase}:{kind}:unreachable"] = self.errors.get(
                            f"{phase}:{kind}:unreachable", 0) + 1
                        await asyncio.sleep(0.05)
                        continue
                    self.latency.setdefault(f"{phase}:{kind}", []).append((time.perf_counter() - started) * 1000)
                    if response.status_code >= 400:
                        key = f"{phase}:{kind}:{response.status_code}"
                        self.errors[key] = self.errors.get(key, 0) + 1

            await asyncio.gather(*(loop(i) for i in range(clients)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=45, help="load before the kill, and again after it")
    parser.add_argument("--bulk-files", type=int, default=120, help="files of the job the killed server runs")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "store_servers.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragtune-servers-"))
    result: dict[str, Any] = {"benchmark": "store_servers", "git": git_state(), "load_before": loadavg(),
                              "clients": args.clients}
    with postgres(work / "pg", keep=False, settings={"jit": "off"}) as url:
        root = work / "kbs"
        root.mkdir()
        with KnowledgeBase.open(root / "handbook", create=True, store=url) as kb:
            kb.ingest(EXAMPLES)
        answers = []
        with FeedbackStore(root / "handbook") as feedback:
            for i in range(50):
                answer = Answer(id=f"bench-answer-{i}", question=f"question {i}?", answer=f"answer {i}",
                                grounded=True)
                feedback.record_answer(answer)
                answers.append(answer.id)
        keys = KeyStore(url)
        key = keys.create("*", "admin", "store_servers bench")[0]
        keys.close()
        ports = [_free_port(), _free_port()]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        procs = [serve(root, port, url) for port in ports]
        try:
            for u, proc in zip(urls, procs, strict=True):
                ready(u, proc)
            headers = {"Authorization": f"Bearer {key}"}
            for u in urls:  # each server loads the embedder on its first search
                httpx.post(f"{u}/v1/kbs/handbook/search", json={"query": "warm up"}, headers=headers, timeout=300)
            log("both servers ready and warm")
            load = Load(urls, key, answers)
            body = [("files", (f"bulk{i:03d}.txt", (f"Bulk record {i} about procurement topic {i % 17}. " * 120
                                                     ).encode(), "text/plain")) for i in range(args.bulk_files)]
            bulk = httpx.post(f"{urls[0]}/v1/kbs/handbook/documents", files=body, headers=headers, timeout=300)
            bulk_job = bulk.json()["job"]["id"]
            asyncio.run(load.run(args.clients, args.seconds, "both"))
            deadline = time.monotonic() + 600
            while (job := httpx.get(f"{urls[1]}/v1/kbs/handbook/jobs/{bulk_job}", headers=headers, timeout=60).json()
                   )["files_done"] < args.bulk_files // 10 and job["status"] == "running":
                if time.monotonic() > deadline:
                    raise SystemExit("the bulk job made no progress")
                time.sleep(0.2)
            runner = job_runner(url, bulk_job)
            log(f"bulk job {job['status']} {job['files_done']}/{job['files_total']} on pid {runner}")
            if job["status"] != "running" or runner not in [p.pid for p in procs]:
                raise SystemExit(f"the bulk job is not running on a server ({job['status']}, runner {runner}) — "
                                 "raise --bulk-files")
            victim = next(i for i, p in enumerate(procs) if p.pid == runner)
            killed_at = time.time()
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait(30)
            result["killed"] = {"server": victim, "pid": runner, "files_done_at_kill": job["files_done"],
                                "files_total": job["files_total"]}
            survivor = urls[1 - victim]
            log(f"killed server {victim}; load continues on both URLs (the dead one refuses)")
            asyncio.run(load.run(args.clients, args.seconds, "after_kill"))
            deadline = time.monotonic() + 1800
            statuses: dict[str, Any] = {}
            with httpx.Client(base_url=survivor, headers=headers, timeout=120) as http:
                for job_id in [bulk_job, *load.jobs]:
                    while (job := http.get(f"/v1/kbs/handbook/jobs/{job_id}").json())["status"] not in (
                            "done", "failed"):
                        if time.monotonic() > deadline:
                            raise SystemExit(f"job {job_id} did not finish")
                        time.sleep(0.5)
                    statuses[job_id] = job
                resumed = statuses[bulk_job]
                result["bulk_job"] = {k: resumed[k] for k in ("status", "attempts", "files_done", "files_total",
                                                              "chunks", "errors")}
                result["bulk_job"]["finished_s_after_kill"] = round(resumed["finished_at"] - killed_at, 1)
                documents = http.get("/v1/kbs/handbook/documents").json()["data"]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
        with KnowledgeBase.open(root / "handbook") as kb:
            verify = kb.verify()
            stored = {d.uri.rsplit("/", 1)[-1]: d for d in kb.documents()}
        with FeedbackStore(root / "handbook") as feedback:
            comments = [r.comment for r in feedback.records()]
    expected_files = {*(p.name for p in EXAMPLES.iterdir()), *(f"bulk{i:03d}.txt" for i in range(args.bulk_files)),
                      *load.uploaded}
    result["integrity"] = {
        "jobs_submitted": 1 + len(load.jobs),
        "jobs_done": sum(j["status"] == "done" for j in statuses.values()),
        # Claimed again after their claimant died (the killed server's running job): resumed, not run twice;
        # what a second run would leave — documents or ratings twice — is counted below.
        "jobs_resumed": sum(j["attempts"] > 1 for j in statuses.values()),
        "jobs_resumed_other_than_the_killed_one": sum(j["attempts"] > 1 for i, j in statuses.items() if i != bulk_job),
        "documents_expected": len(expected_files), "documents_stored": len(stored),
        "documents_missing": sorted(expected_files - stored.keys())[:10],
        "documents_unexpected": sorted(stored.keys() - expected_files)[:10],
        "document_ids_unique": len({d["id"] for d in documents}) == len(documents),
        "documents_without_chunks": sum(d.chunk_count == 0 for d in stored.values()),
        "kb_verify_ok": verify["ok"], "verify_problems": verify["problems"][:5],
        "ratings_accepted": len(load.ratings), "ratings_stored": len(comments),
        "ratings_stored_twice": len(comments) - len(set(comments)),
        "ratings_lost": len({r["comment"] for r in load.ratings} - set(comments)),
    }
    result["requests"] = {name: {"n": len(v), **percentiles(v)} for name, v in sorted(load.latency.items())}
    result["errors"] = load.errors
    result["load_after"] = loadavg()
    rows = [[name, r["n"], r["p50"], r["p95"]] for name, r in result["requests"].items()]
    print_table(rows, ["phase:request", "n", "p50 ms", "p95 ms"])
    print(result["integrity"])
    write_json(args.out, result)


if __name__ == "__main__":
    main()
