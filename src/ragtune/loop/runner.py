"""The flywheel of one knowledge base: freeze an eval set, then each run turns the feedback that arrived since
into datasets, trains the enabled stages, measures each challenger against its champion on the frozen set and
promotes it or rejects it — every decision recorded with its metrics, CIs, data hashes and seeds.

A run is a journal (``loop/runs/rNNN/run.json``): each stage moves through data → train → prepare → measure →
decide → promote | reject → record, saving its phase after each step, so a run killed at any point resumes
where it stopped and a promotion cut short is completed. Nothing that serves changes before the decide phase
says promote; promotion itself is one atomic step (a rename of loop/serving.toml, or the store's single-
transaction vector swap).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError
from ragtune.evaluate.evalset import EvalSetReport, build_eval_set, feedback_rows, unanswerable_probes
from ragtune.evaluate.samples import file_sha256
from ragtune.feedback import FeedbackRecord, FeedbackStore
from ragtune.files import atomic_write, atomic_write_json
from ragtune.jsonl import read_jsonl, write_jsonl
from ragtune.loop import datasets
from ragtune.loop.evaluation import measure
from ragtune.loop.gate import decide, inconclusive
from ragtune.loop.hygiene import HygieneReport, LeakageGuard, Redactor, clean_rows
from ragtune.loop.recipe import STAGES, LoopRecipe, load_loop_recipe
from ragtune.loop.stages import STAGE_RUNNERS, Stage, StageRun
from ragtune.loop.workspace import Workspace, now, read_json

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
PHASES = ("data", "train", "prepare", "measure", "decide", "promote", "reject", "record", "done")


def _quiet(stage: str, done: int, total: int) -> None:
    """No progress display."""


# ---------------------------------------------------------------------------------------------- init


def init_loop(kb: Any, recipe_path: str | Path | None = None, *, force: bool = False,
              on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Set up the loop of ``kb``: validate and keep the recipe, freeze the eval set (a share of the rated answers,
    synthetic questions, unanswerable probes), and record what serves now as each stage's first version (v000).
    A loop set up already is an error unless ``force`` (which freezes a new eval set; versions are kept)."""
    ws = Workspace(kb.path)
    progress = on_progress or _quiet
    with ws.lock():
        if ws.exists() and not force:
            raise ConfigError(f"{kb.path}: the loop is set up already (eval set frozen {ws.state().get('created_at')})"
                              " — 'ragtune loop run' uses it; pass --force to freeze a new eval set")
        text = (Path(recipe_path).read_text(encoding="utf-8") if recipe_path
                else "# the defaults (see recipes/loop.toml)\n")
        recipe = load_loop_recipe(recipe_path)
        rows, report, held = _eval_rows(kb, recipe, progress)
        redactor = Redactor(recipe.data.pii_kinds or None)
        if recipe.data.pii:
            rows = [redactor.value(row) for row in rows]
        if not rows:
            raise ConfigError(f"{kb.path}: nothing to evaluate with — no rated answers to hold out and no synthetic "
                              "questions; rate some answers (👍/👎) first, or set evalset.synthetic in the recipe")
        ws.root.mkdir(parents=True, exist_ok=True)
        atomic_write(ws.recipe_path, text)
        write_jsonl(ws.evalset_path, rows)
        evalset = {"file": ws.evalset_path.name, "sha256": file_sha256(ws.evalset_path), "rows": len(rows),
                   "answerable": sum(r.get("answerable") is not False for r in rows),
                   "unanswerable": sum(r.get("answerable") is False for r in rows),
                   "from_feedback": report.from_feedback, "synthetic": report.synthetic,
                   "pii_redacted": dict(sorted(redactor.counts.items())), "notes": report.notes,
                   "held_answer_ids": sorted(held)}
        atomic_write_json(ws.evalset_path.with_name("evalset.meta.json"), {**evalset, "created_at": now()})
        state = ws.state() if force else {}
        state.update(created_at=now(), evalset=evalset)
        state.setdefault("stages", {})
        for name in STAGES:
            state["stages"].setdefault(name, {"feedback_through": 0})
            _register_current(kb, ws, STAGE_RUNNERS[name], origin="baseline")
        ws.save_state(state)
        ws.append_history({"key": f"init:{state['created_at']}", "kind": "init", "time": now(),
                           "evalset": {k: v for k, v in evalset.items() if k != "held_answer_ids"}})
    return loop_status(kb)


def _eval_rows(kb: Any, recipe: LoopRecipe, progress: ProgressFn) -> tuple[list[dict[str, Any]], EvalSetReport,
                                                                              set[str]]:
    """The frozen eval set: held-out rated answers, synthetic questions, then unanswerable probes."""
    cfg = recipe.evalset
    report = EvalSetReport()
    with FeedbackStore(kb.path) as store:
        answer_ids = sorted({r.answer_id for r in store.records()})
    # A stable share by answer id: the same answers are held out whatever order they arrived in.
    ranked = sorted(answer_ids, key=lambda a: hashlib.sha256(f"{cfg.seed}:{a}".encode()).hexdigest())
    held = set(ranked[: min(cfg.max_feedback, round(len(ranked) * cfg.feedback_share))])
    rows = [r for r in feedback_rows(kb) if r["id"].removeprefix("f-") in held]
    report.from_feedback = len(rows)
    if cfg.synthetic:
        progress("writing synthetic questions", 0, cfg.synthetic)
        synthetic, built = build_eval_set(kb, size=cfg.synthetic, unanswerable=0.0, seed=cfg.seed,
                                          on_progress=progress)
        seen = {datasets_key(r["user_input"]) for r in rows}
        synthetic = [r for r in synthetic if datasets_key(r["user_input"]) not in seen]
        rows += synthetic
        report.synthetic = len(synthetic)
        report.notes += built.notes
    answerable = [r["user_input"] for r in rows if r.get("answerable") is not False]
    wanted = round(len(answerable) * cfg.unanswerable / (1 - cfg.unanswerable)) if cfg.unanswerable else 0
    probes = unanswerable_probes(kb, answerable, wanted, seed=cfg.seed)
    rows += probes
    report.unanswerable = sum(r.get("answerable") is False for r in rows)
    report.rows = len(rows)
    if len(probes) < wanted:
        report.notes.append(f"{len(probes)} of {wanted} unanswerable probes: too few questions had a name or rare "
                            "term to swap")
    return rows, report, held


def datasets_key(question: str) -> str:
    from ragtune.loop.hygiene import normalise_question

    return normalise_question(question)


def _register_current(kb: Any, ws: Workspace, stage: Stage, *, origin: str) -> dict[str, Any]:
    """The version that serves now: a known one, or a new version recording it (``origin`` says why)."""
    value = stage.serving(kb, ws)
    for version in ws.versions(stage.name):
        if stage.same(version["serving"], value):
            return version
    name, path = ws.new_version(stage.name)
    record = {"version": name, "stage": stage.name, "path": str(path), "serving": value, "origin": origin,
              "status": "champion", "created_at": now()}
    ws.save_version(stage.name, record)
    return record


# ---------------------------------------------------------------------------------------------- run


def run_loop(kb: Any, *, stages: Sequence[str] | None = None, on_progress: ProgressFn | None = None
             ) -> dict[str, Any]:
    """One turn of the flywheel (see the module docstring): resumes an interrupted run first. ``stages``: only
    these of the enabled stages. Returns the run record with each stage's decision."""
    ws = Workspace(kb.path)
    ws.require()
    progress = on_progress or _quiet
    with ws.lock():
        recipe = load_loop_recipe(ws.recipe_path)
        state = ws.state()
        run = ws.run(state["active_run"]) if state.get("active_run") else None
        if run is None or run.get("status") == "done":
            chosen = [s for s in recipe.enabled() if stages is None or s in stages]
            unknown = sorted(set(stages or ()) - set(STAGES))
            if unknown:
                raise ConfigError(f"unknown stage(s) {', '.join(unknown)} — use {', '.join(STAGES)}")
            if not chosen:
                raise ConfigError(f"none of {', '.join(stages or ())} is enabled in {ws.recipe_path} — enable it "
                                  "there (enabled = true) and run 'ragtune loop run' again")
            name, _ = ws.new_run()
            run = {"run": name, "status": "running", "started_at": now(), "stages": chosen,
                   "evalset_sha256": state["evalset"]["sha256"], "phases": {s: {"phase": "data"} for s in chosen}}
            ws.save_run(run)
            state["active_run"] = name
            ws.save_state(state)
        else:
            log.info("resuming run %s", run["run"])
            run["resumed"] = run.get("resumed", 0) + 1
        started = time.monotonic()
        for stage_name in run["stages"]:
            _run_stage(kb, ws, recipe, run, STAGE_RUNNERS[stage_name], progress)
        run.update(status="done", finished_at=now())
        run["seconds_last_attempt"] = round(time.monotonic() - started, 1)
        ws.save_run(run)
        state = ws.state()
        state["active_run"] = None
        ws.save_state(state)
    return run


def _run_stage(kb: Any, ws: Workspace, recipe: LoopRecipe, run: dict[str, Any], stage: Stage,
               progress: ProgressFn) -> None:
    record = run["phases"][stage.name]
    directory = ws.runs_dir / run["run"] / stage.name
    directory.mkdir(parents=True, exist_ok=True)
    work = StageRun(kb, ws, recipe, directory, lambda what, done, total: progress(f"{stage.name}: {what}", done,
                                                                                  total), Redactor())
    timings = record.setdefault("seconds", {})

    def advance(phase: str) -> None:
        record["phase"] = phase
        ws.save_run(run)

    while record["phase"] != "done":
        phase = record["phase"]
        started = time.monotonic()
        if phase in ("train", "prepare", "measure", "decide") and not _champion_serves(work, stage, record):
            # A rollback (or a hand edit) changed what serves while this run was interrupted: its challenger
            # was made against another champion, so it is dropped unjudged and its feedback stays new.
            stage.discard(kb, ws.version(stage.name, record["challenger"]).get("serving") or {})
            record["outcome"] = "abandoned"
            record["verdict"] = {"promote": False, "reasons": [
                f"what serves the {stage.name} stage changed while the run was interrupted; the challenger was "
                "dropped unjudged"]}
            advance("record")
            continue
        if phase == "data":
            advance(_data_phase(work, stage, record))
        elif phase == "train":
            version = ws.version(stage.name, record["challenger"])
            data = {name: Path(path) for name, path in record["datasets"].items()}
            champion = ws.version(stage.name, record["champion"])["serving"]
            value, training = stage.train(work, Path(version["path"]), data, champion)
            version.update(serving=value, training=training, status="trained")
            ws.save_version(stage.name, version)
            advance("prepare")
        elif phase == "prepare":
            version = ws.version(stage.name, record["challenger"])
            data = {name: Path(path) for name, path in record["datasets"].items()}
            version["serving"] = stage.prepare(work, version["serving"], data)
            ws.save_version(stage.name, version)
            advance("measure")
        elif phase == "measure":
            _measure_phase(work, stage, record)
            advance("decide")
        elif phase == "decide":
            measured = read_json(directory / "measurement.json")
            waived = stage.waived_guards(ws.version(stage.name, record["champion"])["serving"],
                                         ws.version(stage.name, record["challenger"])["serving"])
            verdict = decide(recipe.stage(stage.name).gate, measured["comparison"], {
                metric: {"champion": measured["champion"]["system"].get(metric),
                         "challenger": measured["challenger"]["system"].get(metric)}
                for metric in ("latency_p95", "peak_rss")}, confidence=recipe.measure.confidence, waived=waived)
            record["verdict"] = verdict.to_dict()
            advance("promote" if verdict.promote else "reject")
        elif phase == "promote":
            version = ws.version(stage.name, record["challenger"])
            progress(f"{stage.name}: promoting {version['version']}", 0, 1)
            stage.apply(kb, ws, version["serving"], work.progress)
            advance("record")
        elif phase == "reject":
            stage.discard(kb, ws.version(stage.name, record["challenger"])["serving"])
            advance("record")
        elif phase == "record":
            _record_phase(work, stage, run, record)
            advance("done")
        else:
            raise ConfigError(f"run {run['run']}: unknown phase {phase!r} of stage {stage.name}")
        timings[phase] = round(timings.get(phase, 0.0) + time.monotonic() - started, 1)
        ws.save_run(run)


def _champion_serves(work: StageRun, stage: Stage, record: dict[str, Any]) -> bool:
    champion = work.workspace.version(stage.name, record["champion"])
    return stage.same(stage.serving(work.kb, work.workspace), champion["serving"])


def _new_records(kb: Any, ws: Workspace, stage: str) -> list[FeedbackRecord]:
    """The ratings this stage has not trained on yet, without the answers held out for evaluation."""
    state = ws.state()
    through = int(state.get("stages", {}).get(stage, {}).get("feedback_through", 0))
    held = set(state["evalset"].get("held_answer_ids", []))
    with FeedbackStore(kb.path) as store:
        records = [r for r in store.records(after=through) if r.answer_id not in held]
    return datasets.latest(records)


def _ranges(ids: Sequence[int]) -> list[list[int]]:
    """Sorted ids as [first, last] runs: which feedback rows a run used, compactly."""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def _data_phase(work: StageRun, stage: Stage, record: dict[str, Any]) -> str:
    kb, ws, recipe = work.kb, work.workspace, work.recipe
    records = _new_records(kb, ws, stage.name)
    work.progress("building datasets", 0, len(records))
    evalset = [row for _, row in read_jsonl(ws.evalset_path)]
    guard = LeakageGuard([r["user_input"] for r in evalset], recipe.data.near_duplicate)
    raw = stage.rows(work, records)
    total = HygieneReport()
    files: dict[str, str] = {}
    hashes: dict[str, str] = {}
    per_dataset: dict[str, Any] = {}
    for spec in stage.datasets:
        rows, report = clean_rows(raw.get(spec.name, []), question=spec.question, key=spec.key, guard=guard,
                                  redact_pii=recipe.data.pii, kinds=recipe.data.pii_kinds or None)
        path = work.directory / f"{spec.name}.jsonl"
        write_jsonl(path, rows)
        files[spec.name], hashes[spec.name] = str(path), file_sha256(path)
        per_dataset[spec.name] = report.to_dict()
        total.add(report)
    used = sorted({r.id for r in records})
    record.update(feedback={"records": len(records), "ids": _ranges(used), "through": max(used, default=0)},
                  hygiene=total.to_dict(), hygiene_by_dataset=per_dataset, datasets=files, data_sha256=hashes,
                  rows=total.rows_out, seed=recipe.stage(stage.name).seed)
    needed = recipe.stage(stage.name).min_examples
    if total.rows_out < needed:
        record["verdict"] = {"promote": False, "reasons": [
            f"{total.rows_out} new training rows, {needed} needed (min_examples): waiting for more feedback"]}
        record["outcome"] = "waiting"
        return "record"
    champion = _register_current(kb, ws, stage, origin="external")
    name, path = ws.new_version(stage.name)
    ws.save_version(stage.name, {"version": name, "stage": stage.name, "path": str(path), "serving": {},
                                 "origin": f"run {work.directory.parent.name}", "status": "training",
                                 "parent": champion["version"], "created_at": now(),
                                 "dataset": next(iter(files), ""), "data_sha256": hashes})
    record.update(champion=champion["version"], challenger=name)
    return "train"


def _measure_phase(work: StageRun, stage: Stage, record: dict[str, Any]) -> None:
    kb, ws, recipe = work.kb, work.workspace, work.recipe
    gate = recipe.stage(stage.name).gate
    metrics = list(dict.fromkeys([gate.target, *gate.guards]))
    champion = ws.version(stage.name, record["champion"])
    challenger = ws.version(stage.name, record["challenger"])
    rows = [row for _, row in read_jsonl(ws.evalset_path)]
    measured = measure(
        kb, rows, stage.variant(champion["serving"], "champion", live=True),
        stage.variant(challenger["serving"], "challenger", live=False), metrics, recipe.measure,
        latency_path=stage.latency_path, cache_dir=ws.root / "cache", on_progress=work.progress,
    )
    atomic_write_json(work.directory / "measurement.json", measured)


def _record_phase(work: StageRun, stage: Stage, run: dict[str, Any], record: dict[str, Any]) -> None:
    ws = work.workspace
    outcome = record.get("outcome") or ("promoted" if record.get("verdict", {}).get("promote") else "rejected")
    record["outcome"] = outcome
    entry: dict[str, Any] = {
        "key": f"{run['run']}:{stage.name}", "kind": "decision", "run": run["run"], "stage": stage.name,
        "time": now(), "verdict": outcome, "why": record.get("verdict", {}).get("reasons", []),
        "champion": record.get("champion"), "challenger": record.get("challenger"),
        "evalset_sha256": run["evalset_sha256"], "seed": record.get("seed"),
        "bootstrap": {"confidence": work.recipe.measure.confidence, "resamples": work.recipe.measure.resamples,
                      "seed": work.recipe.measure.seed},
        "data": {"feedback": record.get("feedback"), "rows": record.get("rows"), "sha256": record.get("data_sha256"),
                 "hygiene": record.get("hygiene")},
        "seconds": record.get("seconds", {}),
    }
    if outcome in ("promoted", "rejected"):
        measured = read_json(work.directory / "measurement.json")
        entry["target"] = record["verdict"]["target"]
        entry["guards"] = record["verdict"]["guards"]
        entry["metrics"] = {name: {"champion": measured["champion"]["run"]["metrics"].get(name),
                                   "challenger": measured["challenger"]["run"]["metrics"].get(name)}
                            for name in sorted(set(measured["champion"]["run"]["metrics"])
                                               | set(measured["challenger"]["run"]["metrics"]))}
        for metric in ("latency_p95", "peak_rss"):
            entry["metrics"][metric] = {"champion": measured["champion"]["system"].get(metric),
                                        "challenger": measured["challenger"]["system"].get(metric)}
        entry["comparison"] = measured["comparison"]["metrics"]
        challenger = ws.version(stage.name, record["challenger"])
        champion = ws.version(stage.name, record["champion"])
        challenger.update(status="champion" if outcome == "promoted" else "rejected",
                          decided_in=run["run"], metrics={k: v["challenger"] for k, v in entry["metrics"].items()})
        ws.save_version(stage.name, challenger)
        if outcome == "promoted":
            champion["status"] = "retired"
            ws.save_version(stage.name, champion)
    elif outcome == "abandoned":
        challenger = ws.version(stage.name, record["challenger"])
        challenger["status"] = "abandoned"
        ws.save_version(stage.name, challenger)
    kept = outcome == "rejected" and work.recipe.data.carry_inconclusive and inconclusive(record["verdict"])
    if kept:
        entry["feedback_kept"] = True
        entry["why"] = [*entry["why"], "inconclusive, not worse: its feedback stays for the next run "
                        "(data.carry_inconclusive)"]
    ws.append_history(entry)
    if outcome == "promoted" or (outcome == "rejected" and not kept):
        state = ws.state()
        through = record["feedback"]["through"]
        current = state["stages"].setdefault(stage.name, {"feedback_through": 0})
        current["feedback_through"] = max(int(current.get("feedback_through", 0)), int(through))
        ws.save_state(state)


# ---------------------------------------------------------------------------------------------- reading


def loop_status(kb: Any) -> dict[str, Any]:
    """Each stage's champion (read from what serves), the feedback waiting, and the last decisions."""
    ws = Workspace(kb.path)
    ws.require()
    state = ws.state()
    recipe = load_loop_recipe(ws.recipe_path)
    with FeedbackStore(kb.path) as store:
        records = list(store.records())
    held = set(state["evalset"].get("held_answer_ids", []))
    history = ws.history()
    stages: dict[str, Any] = {}
    for name in STAGES:
        stage = STAGE_RUNNERS[name]
        value = stage.serving(kb, ws)
        champion = next((v for v in ws.versions(name) if stage.same(v["serving"], value)), None)
        through = int(state.get("stages", {}).get(name, {}).get("feedback_through", 0))
        decisions = [h for h in history if h.get("stage") == name and h.get("kind") in ("decision", "rollback")]
        stages[name] = {
            "enabled": name in recipe.enabled(), "champion": champion["version"] if champion else None,
            "serving": value, "versions": len(ws.versions(name)),
            "new_feedback": sum(1 for r in records if r.id > through and r.answer_id not in held),
            "last": _brief(decisions[-1]) if decisions else None,
        }
    active = ws.run(state["active_run"]) if state.get("active_run") else None
    return {
        "kb": str(kb.path), "evalset": {k: v for k, v in state["evalset"].items() if k != "held_answer_ids"},
        "created_at": state.get("created_at"),
        "feedback": {"up": sum(r.rating == "up" for r in records), "down": sum(r.rating == "down" for r in records),
                     "corrections": sum(bool(r.corrected_answer) for r in records), "total": len(records),
                     "held_out": len(held)},
        "stages": stages,
        "active_run": {"run": active["run"], "phases": {s: p["phase"] for s, p in active["phases"].items()}}
        if active and active.get("status") != "done" else None,
        "decisions": [_brief(h) for h in history if h.get("kind") in ("decision", "rollback")][-10:],
    }


def _brief(entry: dict[str, Any]) -> dict[str, Any]:
    target = entry.get("target") or {}
    return {"run": entry.get("run"), "stage": entry.get("stage"), "time": entry.get("time"),
            "verdict": entry.get("verdict"), "champion": entry.get("champion"), "challenger": entry.get("challenger"),
            "metric": target.get("metric"), "difference": target.get("difference"), "low": target.get("low"),
            "high": target.get("high"), "why": entry.get("why", [])}


def loop_history(kb: Any) -> list[dict[str, Any]]:
    """Every record of the loop, oldest first: init, decisions (metrics, CIs, data hashes, seeds, verdict and
    why) and rollbacks."""
    ws = Workspace(kb.path)
    ws.require()
    return ws.history()


# ---------------------------------------------------------------------------------------------- rollback, prune


def rollback(kb: Any, stage_name: str, *, to: str | None = None, on_progress: ProgressFn | None = None
             ) -> dict[str, Any]:
    """Make a kept version of a stage serve again (default: the champion before the current one), atomically;
    recorded in the history."""
    ws = Workspace(kb.path)
    ws.require()
    if stage_name not in STAGES:
        raise ConfigError(f"unknown stage {stage_name!r} — use one of {', '.join(STAGES)}")
    stage = STAGE_RUNNERS[stage_name]
    with ws.lock():
        current = _register_current(kb, ws, stage, origin="external")
        if to is None:
            to = _previous(ws, stage_name, current["version"])
        target = ws.version(stage_name, to)
        if not target.get("serving") or target.get("status") == "training":
            raise ConfigError(f"{stage_name} {to} was never finished — pick another version ('ragtune loop history')")
        if stage.same(target["serving"], current["serving"]):
            raise ConfigError(f"{stage_name} {to} is already the champion")
        for path_key in ("embedder", "demonstrations", "llm_adapter"):
            path = target["serving"].get(path_key)
            if path and path.startswith("/") and not Path(path).exists():
                raise ConfigError(f"{stage_name} {to}: its files are gone ({path}) — was it pruned? Pick another "
                                  "version")
        stage.apply(kb, ws, target["serving"], on_progress or _quiet)
        current["status"] = "retired"
        ws.save_version(stage_name, current)
        target["status"] = "champion"
        ws.save_version(stage_name, target)
        entry = {"key": f"rollback:{stage_name}:{now()}:{time.monotonic_ns()}", "kind": "rollback",
                 "stage": stage_name, "time": now(), "verdict": "rolled back", "champion": current["version"],
                 "challenger": to, "why": [f"rolled back from {current['version']} to {to}"]}
        ws.append_history(entry)
    return {"stage": stage_name, "from": current["version"], "to": to}


def _previous(ws: Workspace, stage: str, current: str) -> str:
    """The champion before ``current``: what the decision (or rollback) that made ``current`` serve replaced."""
    for entry in reversed(ws.history()):
        if entry.get("stage") == stage and entry.get("challenger") == current and (
                entry.get("verdict") in ("promoted", "rolled back")):
            return str(entry["champion"])
    raise ConfigError(f"{stage}: {current} was not made champion by the loop, so there is no earlier champion to go "
                      "back to — name one with --to (see 'ragtune loop history')")


def prune(kb: Any, *, keep: int = 2) -> dict[str, list[str]]:
    """Delete the files of old versions: per stage, all but the champion, the first version (v000) and the
    ``keep`` newest; their records stay (marked pruned) so the history still names them."""
    ws = Workspace(kb.path)
    ws.require()
    removed: dict[str, list[str]] = {}
    with ws.lock():
        for name in STAGES:
            stage = STAGE_RUNNERS[name]
            value = stage.serving(kb, ws)
            versions = ws.versions(name)
            newest = {v["version"] for v in versions[-keep:]} if keep > 0 else set()
            for version in versions:
                if (version["version"] in newest or version["version"] == "v000" or version.get("status") == "pruned"
                        or stage.same(version.get("serving", {}), value)):
                    continue
                for child in Path(version["path"]).iterdir():
                    if child.name != "version.json":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
                version["status"] = "pruned"
                ws.save_version(name, version)
                removed.setdefault(name, []).append(version["version"])
    return removed
