"""Publish screenshots of the web page: runs the browser walkthrough test with its screenshots sent to bench/results.

    .venv/bin/python bench/web_screenshots.py      # writes bench/results/web_{upload,answer,source,feedback,zh}.png

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
