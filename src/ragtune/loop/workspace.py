"""A knowledge base's loop folder (``KB/loop``): the frozen recipe and eval set, every stage's versions, the runs,
the decision history and the promoted settings. Every file is replaced atomically (write, fsync, rename), so a
crash leaves either the old or the new content, never a torn one."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, StoreError
from ragtune.files import atomic_write, atomic_write_json
from ragtune.settings import CHAMPION_FILE

LOOP_DIR = "loop"
STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"
RECIPE_FILE = "recipe.toml"
EVALSET_FILE = "evalset.jsonl"
VERSION_FILE = "version.json"
RUN_FILE = "run.json"


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # JSON string escapes are TOML basic-string escapes.
    return json.dumps(str(value))


class Workspace:
    """Paths and records of ``KB/loop``; see the module docstring."""

    def __init__(self, kb_path: str | Path) -> None:
        self.kb_path = Path(kb_path)
        self.root = self.kb_path / LOOP_DIR
        self.recipe_path = self.root / RECIPE_FILE
        self.evalset_path = self.root / EVALSET_FILE
        self.state_path = self.root / STATE_FILE
        self.history_path = self.root / HISTORY_FILE
        self.versions_dir = self.root / "versions"
        self.runs_dir = self.root / "runs"
        self.serving_path = self.kb_path / CHAMPION_FILE

    # ------------------------------------------------------------------ state

    def exists(self) -> bool:
        return self.state_path.is_file()

    def require(self) -> None:
        if not self.exists():
            raise ConfigError(f"{self.kb_path}: the loop is not set up — run 'ragtune loop init --kb {self.kb_path}' "
                              "first (it freezes the eval set)")

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = read_json(self.state_path, {})
        return state

    def save_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.state_path, state)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the loop of this KB: a second 'loop run', 'init' or 'rollback' meanwhile is refused."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{self.kb_path}: another 'ragtune loop' command is working on this knowledge base — "
                                 "wait for it to finish ('ragtune loop status' shows its run)") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ history

    def history(self) -> list[dict[str, Any]]:
        """Every decision, oldest first (a line cut short by a crash is skipped)."""
        if not self.history_path.is_file():
            return []
        records = []
        for line in self.history_path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                if line.strip():
                    records.append(json.loads(line))
        return records

    def append_history(self, record: dict[str, Any]) -> None:
        """Append a decision once: one already recorded under the same ``key`` (a resumed run) is not repeated."""
        if any(r.get("key") == record["key"] for r in self.history()):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    # ------------------------------------------------------------------ versions

    def stage_dir(self, stage: str) -> Path:
        return self.versions_dir / stage

    def versions(self, stage: str) -> list[dict[str, Any]]:
        """The versions of a stage, oldest first, each its version.json."""
        directory = self.stage_dir(stage)
        if not directory.is_dir():
            return []
        found = [read_json(p / VERSION_FILE) for p in sorted(directory.iterdir()) if (p / VERSION_FILE).is_file()]
        return [v for v in found if v]

    def version(self, stage: str, name: str) -> dict[str, Any]:
        record = read_json(self.stage_dir(stage) / name / VERSION_FILE)
        if not record:
            known = ", ".join(v["version"] for v in self.versions(stage)) or "none"
            raise ConfigError(f"stage {stage} has no version {name!r} — its versions: {known} ('ragtune loop "
                              "history' lists them)")
        return dict(record)

    def new_version(self, stage: str) -> tuple[str, Path]:
        """The next free version name of a stage (v000, v001, ...) and its folder, created."""
        directory = self.stage_dir(stage)
        directory.mkdir(parents=True, exist_ok=True)
        taken = {p.name for p in directory.iterdir()}
        number = 0
        while f"v{number:03d}" in taken:
            number += 1
        path = directory / f"v{number:03d}"
        path.mkdir()
        return path.name, path

    def save_version(self, stage: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.stage_dir(stage) / record["version"] / VERSION_FILE, record)

    # ------------------------------------------------------------------ runs

    def new_run(self) -> tuple[str, Path]:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        taken = {p.name for p in self.runs_dir.iterdir()}
        number = 1
        while f"r{number:03d}" in taken:
            number += 1
        path = self.runs_dir / f"r{number:03d}"
        path.mkdir()
        return path.name, path

    def run(self, name: str) -> dict[str, Any]:
        record: dict[str, Any] = read_json(self.runs_dir / name / RUN_FILE, {})
        return record

    def save_run(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.runs_dir / record["run"] / RUN_FILE, record)

    def runs(self) -> list[dict[str, Any]]:
        if not self.runs_dir.is_dir():
            return []
        return [r for r in (self.run(p.name) for p in sorted(self.runs_dir.iterdir())) if r]

    # ------------------------------------------------------------------ what serves

    def serving(self) -> dict[str, Any]:
        """The settings the loop promoted (loop/serving.toml)."""
        try:
            return tomllib.loads(self.serving_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def set_serving(self, updates: dict[str, Any]) -> None:
        """Change promoted settings in one atomic replace of loop/serving.toml (a value of None removes the key)."""
        values = self.serving()
        for key, value in updates.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        lines = ["# Written by 'ragtune loop' (promotions and rollbacks): the champions of its stages. These settings",
                 "# sit above the KB's ragtune.toml and below RAGTUNE_* variables and flags. Edit with care.", ""]
        lines += [f"{key} = {_toml_value(value)}" for key, value in sorted(values.items())]
        atomic_write(self.serving_path, "\n".join(lines) + "\n")
