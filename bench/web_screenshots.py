"""Publish screenshots of the web page: runs the browser walkthrough test with its screenshots sent to bench/results.

    .venv/bin/python bench/web_screenshots.py      # writes bench/results/web_*.png (one per state the tests check)

upload, answer, source, feedback (desktop); first_load, wrong_key (the key message); zh, zh_error (中文, with a
server error); phone, phone_zh (390 px, full page); reader (no upload/create/delete); docs (/docs with no network).

The test itself writes into a temporary folder, so `make test` never changes tracked files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    env = {**os.environ, "RAGTUNE_SCREENSHOTS": str(ROOT / "bench" / "results"), "HF_HUB_OFFLINE": "1"}
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(ROOT / "tests" / "e2e" / "test_web.py")], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
