"""The trust commands as a user drives them: ingest --acl, kb docs/acl/flagged, search --as-groups, audit, keys
--groups."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "guard"


def ragtune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ragtune", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_groups_search_audit_and_keys_from_the_command_line(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(FIXTURES / "acl" / "hr", docs / "hr")
    shutil.copytree(FIXTURES / "acl" / "public", docs / "public")
    shutil.copy(FIXTURES / "injection" / "poisoned" / "00-md-en.md", docs / "public" / "router.md")
    kb = str(tmp_path / "kb")
    assert ragtune("ingest", str(docs / "hr"), "--kb", kb, "--acl", "hr", "--json", cwd=tmp_path).returncode == 0
    assert ragtune("ingest", str(docs / "public"), "--kb", kb, "--json", cwd=tmp_path).returncode == 0

    listed = json.loads(ragtune("kb", "docs", "--kb", kb, "--json", cwd=tmp_path).stdout)
    groups = {Path(d["source"]).name: (d["groups"], d["own_groups"], d["flagged_chunks"]) for d in listed}
    assert groups["salary-bands.md"] == (["hr"], True, 0)
    assert groups["expenses.md"] == (["all"], False, 0)
    assert groups["router.md"][2] >= 1
    flagged = json.loads(ragtune("kb", "flagged", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert [Path(f["source"]).name for f in flagged] == ["router.md"] and flagged[0]["reason"].startswith("rules:")

    salary = next(d["id"] for d in listed if d["source"].endswith("salary-bands.md"))
    found = ragtune("search", "salary band E3 bonus", "--kb", kb, "--as-groups", "all", "--mode", "sparse", "--json",
                    cwd=tmp_path)
    assert found.returncode == 0 and not any(h["document_id"] == salary for h in json.loads(found.stdout)["hits"])
    changed = ragtune("kb", "acl", salary, "--set", "hr,all", "--kb", kb, "--json", cwd=tmp_path)
    assert json.loads(changed.stdout)["groups"] == ["all", "hr"]
    batch = tmp_path / "queries.txt"
    batch.write_text("salary band E3 bonus\ncanteen lunch hours\n")
    lines = ragtune("search", "--queries", str(batch), "--kb", kb, "--as-groups", "all", "--mode", "sparse", "--json",
                    cwd=tmp_path).stdout.splitlines()
    results = [json.loads(line) for line in lines]
    assert [r["query"] for r in results] == ["salary band E3 bonus", "canteen lunch hours"]
    assert results[0]["hits"][0]["document_id"] == salary
    refused = ragtune("search", "salary", "--kb", kb, "--as-groups", "*", "--json", cwd=tmp_path)
    assert refused.returncode == 1 and "not a group a viewer can act as" in json.loads(refused.stdout)["error"]

    audit = json.loads(ragtune("audit", "--kb", kb, "--json", cwd=tmp_path).stdout)
    actions = [(e["action"], e["groups"]) for e in audit]
    assert ("search", ["all"]) in actions and ("acl", None) in actions
    assert all(e["actor"].startswith("cli") for e in audit)
    searches = [e for e in audit if e["action"] == "search"]
    assert len(searches) == 3 and searches[1]["shown"][0] == salary  # the refused one never searched
    since = json.loads(ragtune("audit", "--kb", kb, "--since", "2999-01-01", "--json", cwd=tmp_path).stdout)
    assert since == []
    assert json.loads(ragtune("audit", "--kb", kb, "--verify", "--json", cwd=tmp_path).stdout)["ok"] is True

    key = json.loads(ragtune("keys", "create", "--kb", "handbook", "--groups", "hr,all", "--server-db",
                             str(tmp_path / "server.db"), "--json", cwd=tmp_path).stdout)
    assert key["groups"] == ["all", "hr"]
    keys = json.loads(ragtune("keys", "list", "--server-db", str(tmp_path / "server.db"), "--json",
                              cwd=tmp_path).stdout)
    assert keys[0]["groups"] == ["all", "hr"]


def test_ask_with_a_schema_answers_json_from_the_bundled_model(tmp_path):
    """`ragtune ask --schema` with the default (bundled, in-process) model: constrained decoding writes JSON the
    schema validates on the first attempt, with the field's source; a schema file that is not JSON is a clear
    error."""
    docs = tmp_path / "docs"
    shutil.copytree(FIXTURES / "acl" / "hr", docs / "hr")
    kb = str(tmp_path / "kb")
    assert ragtune("ingest", str(docs), "--kb", kb, "--json", cwd=tmp_path).returncode == 0
    schema = tmp_path / "leave.schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["weeks_birth_parents"], "properties": {
        "weeks_birth_parents": {"type": "integer"}, "paid": {"type": "boolean"}}}))
    done = ragtune("ask", "How many weeks of paid parental leave do birth parents get?", "--kb", kb,
                   "--schema", str(schema), "--retries", "0", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["data"]["weeks_birth_parents"] == 20 and isinstance(answer["data"]["paid"], bool)
    assert answer["strategy"] == "constrained" and answer["attempts"] == 1
    cited = answer["field_sources"]["/weeks_birth_parents"]
    assert cited and answer["sources"][cited[0] - 1]["source"].endswith("parental-leave.md")
    schema.write_text("{not json")
    bad = ragtune("ask", "How many weeks?", "--kb", kb, "--schema", str(schema), "--json", cwd=tmp_path)
    assert bad.returncode == 1 and "not a readable JSON Schema" in json.loads(bad.stdout)["error"]
