"""Answers through `ragtune serve` and the official openai client, with the bundled model: stream and non-stream
give identical text for 30 questions (refusals and [n] markers included), and a 12-turn EN + ZH conversation whose
10 follow-ups must retrieve the chunk that holds their answer.

    python bench/answer_api.py            # writes bench/results/answer_api.json

The knowledge base is the fixtures' (tests/fixtures/answers/docs), built once under bench/.cache/answers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, loadavg, machine, write_json
from answer_accuracy import CACHE, FIXTURES, open_kb, states

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--kb-root", str(root), "--port", str(port),
                                "--no-auth", "--server-db", str(root / "server.db")], env=env, cwd=root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("ragtune serve did not start")


def ask(client: Any, messages: list[dict[str, str]]) -> tuple[str, str, dict[str, Any]]:
    """(streamed text, non-streamed content, the non-streamed extras)."""
    chunks = list(client.chat.completions.create(model="kb:fixtures", messages=messages, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    whole = client.chat.completions.create(model="kb:fixtures", messages=messages)
    return streamed, whole.choices[0].message.content or "", whole.model_extra or {}


def main() -> None:
    import openai

    suite = json.loads((FIXTURES / "suite.json").read_text(encoding="utf-8"))
    source_kb = open_kb("fixtures", FIXTURES / "docs")
    source_kb.close()
    root = CACHE / "serve-root"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(CACHE / "kb-fixtures", root / "fixtures")
    process, url = serve(root)
    started = time.perf_counter()
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
        english = [q for q in suite["answerable"] if q["lang"] == "en"][:12]
        chinese = [q for q in suite["answerable"] if q["lang"] == "zh"][:8]
        unanswerable = suite["unanswerable"][:10]
        pairs = []
        for item in english + chinese + unanswerable:
            streamed, whole, extra = ask(client, [{"role": "user", "content": item["q"]}])
            pairs.append({"q": item["q"], "identical": streamed == whole, "streamed": streamed, "content": whole,
                          "mode": extra.get("mode"), "refused": extra.get("refused")})
            print(f"{'same' if streamed == whole else 'DIFF'} {extra.get('mode'):10} {item['q'][:50]} | {whole[:70]}",
                  flush=True)

        # The retrieved chunks' texts, read from the knowledge base's database (its source of truth).
        database = sqlite3.connect(root / "fixtures" / "ragtune.db")
        history: list[dict[str, str]] = []
        turns = []
        for turn in suite["conversation"]:
            messages = [*history, {"role": "user", "content": turn["q"]}]
            streamed, whole, extra = ask(client, messages)
            chunk_ids = [c for s in extra.get("sources", []) for c in s.get("chunk_ids", [s["chunk_id"]])]
            marks = ",".join("?" * len(chunk_ids))
            texts = [row[0] for row in database.execute(f"SELECT text FROM chunks WHERE uid IN ({marks})", chunk_ids)]
            right_chunk = any(states(t, f) for t in texts for f in turn["facts"])
            answered = any(states(whole, f) for f in turn["facts"]) and not extra.get("refused")
            turns.append({"q": turn["q"], "follow_up": turn["follow_up"], "right_chunk": right_chunk,
                          "answered_right": answered, "answer": whole, "identical": streamed == whole,
                          "sources": [s["name"] for s in extra.get("sources", [])]})
            print(f"{'chunk' if right_chunk else 'MISS '} {'right' if answered else 'WRONG'} {turn['q'][:40]} | "
                  f"{whole[:70]}", flush=True)
            history += [{"role": "user", "content": turn["q"]}, {"role": "assistant", "content": whole}]
        database.close()
    finally:
        process.terminate()
        process.wait(30)
    follow_ups = [t for t in turns if t["follow_up"]]
    write_json(RESULTS_DIR / "answer_api.json", {
        "stream_vs_non_stream": {"questions": len(pairs), "identical": sum(p["identical"] for p in pairs),
                                 "pairs": pairs},
        "conversation": {"turns": len(turns), "follow_ups": len(follow_ups),
                         "follow_ups_right_chunk": sum(t["right_chunk"] for t in follow_ups),
                         "follow_ups_answered_right": sum(t["answered_right"] for t in follow_ups),
                         "all_turns_right_chunk": sum(t["right_chunk"] for t in turns), "turns_detail": turns},
        "wall_s": round(time.perf_counter() - started, 1), "loadavg": loadavg(), "machine": machine(),
    })


if __name__ == "__main__":
    main()
