"""Property-based fuzzing of every operation in /openapi.json with schemathesis: no input may cause a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("key, extra", [
    ("reader", []),  # a KB-scoped reader: the auth paths of every operation
    ("admin", ["--exclude-method", "DELETE"]),  # reaches every handler's own validation; deletes nothing
])
def test_no_generated_request_causes_a_server_error(live, key, extra, tmp_path):
    st = Path(sys.executable).with_name("st")
    command = [str(st), "run", f"{live.url}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "6",
               "--seed", "1", "--phases", "examples,fuzzing", "--request-timeout", "30",
               "--header", f"Authorization: Bearer {live.keys[key]}", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its cache
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Tested:" in result.stdout
