"""The graph from the command line: ingest --graph, graph build (resumable), stats, entities, neighbors,
export, search --mode graph/auto with paths and routes, kb verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
from graph_fixtures import TWOHOP

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUESTION = "Which office does the team of the project led by Ada Park work from?"


def ragtune(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ragtune", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    for path in sorted((TWOHOP / "docs").glob("en-project-office-*")) + sorted((TWOHOP / "docs").glob("zh-*-1-*")):
        shutil.copy(path, folder / path.name)
    return folder


def test_graph_commands(tmp_path, docs):
    kb = str(tmp_path / "kb")
    later = tmp_path / "later"
    later.mkdir()
    for path in docs.glob("zh-*"):
        shutil.move(path, later / path.name)
    plain = ragtune("ingest", str(docs), "--kb", kb, "--json", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    missing = ragtune("graph", "stats", "--kb", kb, cwd=tmp_path)
    assert missing.returncode == 1 and "graph build" in missing.stderr

    built = ragtune("graph", "build", "--kb", kb, "--json", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)
    assert report["chunks"] == report["extracted"] == 6 and report["graph"]["chunks_missing"] == 0

    for path in later.iterdir():
        shutil.move(path, docs / path.name)
    (docs / "en-project-office-1-b.md").write_text("The Lumen team moved to the Riverside office in Lyon.\n")
    assert ragtune("ingest", str(docs), "--kb", kb, "--graph", cwd=tmp_path).returncode == 0  # kept in step
    verified = json.loads(ragtune("kb", "verify", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert verified["ok"], verified

    stats = json.loads(ragtune("graph", "stats", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert stats["entities"] > 20 and stats["chunks_in_graph"] == 16 and "top_communities" in stats
    entities = json.loads(ragtune("graph", "entities", "--kb", kb, "--top", "3", "--kind", "person", "--json",
                                  cwd=tmp_path).stdout)
    assert len(entities) == 3 and all(e["kind"] == "person" for e in entities)
    near = json.loads(ragtune("graph", "neighbors", "lumen", "--kb", kb, "--json", cwd=tmp_path).stdout)
    assert near["entity"]["key"] == "lumen" and {"adapark", "lyon"} <= {n["key"] for n in near["neighbors"]}
    assert "porto" not in {n["key"] for n in near["neighbors"]}

    out = tmp_path / "g.graphml"
    exported = ragtune("graph", "export", "--kb", kb, "--format", "graphml", "--out", str(out), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert nx.read_graphml(out).number_of_nodes() == stats["entities"] + 16

    # The second hop in the top 5, as the two-hop bench counts it (the one-sentence document it rewrote above is
    # 5th under BM25 b = 0.4, 3rd under b = 0.75, which favours short documents more).
    found = json.loads(ragtune("search", QUESTION, "--kb", kb, "--mode", "graph", "-k", "5", "--json",
                               cwd=tmp_path).stdout)
    office = next(h for h in found["hits"] if h["source"].endswith("en-project-office-1-b.md"))
    assert office["path"][0] == "question: Ada Park"
    routed = ragtune("search", "周雅婷负责的项目的团队在哪个城市办公？", "--kb", kb, "--mode", "auto", cwd=tmp_path)
    assert "route: graph" in routed.stdout and "via question: 周雅婷" in routed.stdout
    # An answer says which path the router took, in --json and on the terminal (a Chinese question is answered by
    # quoting: the bundled model is not loaded).
    asked = json.loads(ragtune("ask", "周雅婷负责的项目的团队在哪个城市办公？", "--kb", kb, "--mode", "auto", "--json",
                               cwd=tmp_path).stdout)
    assert asked["retrieval"]["mode"] == "auto" and asked["retrieval"]["route"]["decision"] == "graph"
    assert asked["retrieval"]["route"]["signals"]["multi_hop_pattern"]
    shown = ragtune("ask", "周雅婷负责的项目的团队在哪个城市办公？", "--kb", kb, "--mode", "auto", cwd=tmp_path)
    assert shown.returncode == 0 and "route: graph" in shown.stdout, shown.stdout
