"""The audit log survives a server SIGKILL: ``ragtune serve`` is killed -9 while searches and answers are in flight,
three times; after each restart the hash chain must verify, every request that got its response must have its entry,
and every entry must be whole.

    python bench/guard_audit_sigkill.py                 # writes bench/results/guard_audit_sigkill.json
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from _common import RESULTS_DIR, loadavg, machine, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "server"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(kb: Path, db: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--kb", str(kb), "--server-db", str(db),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start")


def client(port: int, secret: str, stop: threading.Event, lock: threading.Lock, acknowledged: list[str],
           n: int) -> None:
    """Searches and answers until stopped or the server is gone; records each question that got its response."""
    sent = n
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"Authorization": f"Bearer {secret}"}) as http:
        while not stop.is_set():
            question = f"how do refunds work {uuid.uuid4().hex[:8]}"
            sent += 1
            try:
                if sent % 2:
                    response = http.post("/v1/kbs/handbook/search", json={"query": question, "k": 3})
                else:
                    response = http.post("/v1/chat/completions", json={
                        "model": "kb:handbook", "messages": [{"role": "user", "content": question}]})
            except httpx.TimeoutException:
                continue
            except httpx.HTTPError:
                return  # the server is gone
            if response.status_code == 200:
                with lock:
                    acknowledged.append(question)


def main() -> None:
    from harness import fake_llm_server

    from ragtune.guard.audit import AuditLog
    from ragtune.kb import KnowledgeBase
    from ragtune.server.keys import KeyStore

    llm = fake_llm_server()
    llm_url = next(llm)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        kb_dir = tmp / "handbook"
        with KnowledgeBase.open(kb_dir, create=True) as kb:
            kb.ingest(ROOT / "examples" / "handbook")
        db = tmp / "server.db"
        keys = KeyStore(db)
        secret = keys.create("handbook", "reader", "bench", groups="all")[0]
        keys.close()
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "RAGTUNE_LLM": "openai", "RAGTUNE_LLM_MODEL": "fake", "RAGTUNE_LLM_BASE_URL": llm_url,
               "RAGTUNE_RATE_LIMIT_PER_MINUTE": "0"}
        acknowledged: list[str] = []
        for round_ in range(3):
            port = free_port()
            server = start(kb_dir, db, port, env)
            # Load the models before the clients start, so the kill lands among answered requests.
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=300,
                       headers={"Authorization": f"Bearer {secret}"},
                       json={"model": "kb:handbook", "messages": [{"role": "user", "content": "warm up"}]})
            stop = threading.Event()
            lock = threading.Lock()
            threads = [threading.Thread(target=client, args=(port, secret, stop, lock, acknowledged, n))
                       for n in range(4)]
            for t in threads:
                t.start()
            time.sleep(15 + 5 * round_)
            os.kill(server.pid, signal.SIGKILL)
            server.wait(30)
            stop.set()
            for t in threads:
                t.join(60)
            with AuditLog(kb_dir / "ragtune.db") as audit:
                report = audit.verify()
                entries = audit.entries()
            logged = {e.question for e in entries if e.question != "warm up"}
            missing = [q for q in acknowledged if q not in logged]
            whole = all(isinstance(e.retrieved, list) and e.actor.startswith("key:") and e.question for e in entries)
            rounds.append({"round": round_ + 1, "requests_acknowledged_total": len(acknowledged),
                           "entries_total": len(entries), "acknowledged_without_entry": len(missing),
                           "chain": report, "entries_whole": whole})
            print(rounds[-1])
    next(llm, None)
    ok = all(r["chain"]["ok"] and r["acknowledged_without_entry"] == 0 and r["entries_whole"] for r in rounds)
    write_json(RESULTS_DIR / "guard_audit_sigkill.json", {
        "command": "python bench/guard_audit_sigkill.py", "rounds": rounds, "survived": ok, "loadavg": loadavg(),
        "machine": machine()})


if __name__ == "__main__":
    main()
