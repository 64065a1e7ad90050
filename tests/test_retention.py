"""Evidence kept for years (issue 15): retention archives closed runs older than the horizon to Parquet with a
manifest of SHA-256s, removes them, and leaves a checkpoint in the audit chain, so ``verify-audit`` verifies the
live chain and, given the archive, the whole chain; legal holds keep what they hold; a crash anywhere in an
apply loses nothing and the next apply finishes."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from cli.main import main
from engine.authz import NotAuthorized
from engine.commands import holds as hold_commands
from engine.commands import retention as retention_commands
from engine.runtime import Engine
from store import archive as archive_files
from store import retention as retention_store
from store.audit import CHECKPOINT_EVENT, GENESIS_HASH
from store.rollups import read_rollup_tables, recompute_rollups
from store.schema import audit_log, metadata
from store.subjects import insert_subjects
from tests.backends import backend_fixture, pg_server_fixture, workspace_db_fixture  # noqa: F401
from tests.support import account_rows, actor, audit_of, finding_definition, scalar

WEEK = dt.timedelta(weeks=1)


def _old_runs(make_engine: Any, weeks: int = 3, accounts: int = 2, **kw: Any) -> tuple[Engine, list[str], list[str]]:
    """``weeks`` weekly runs, then the clock moved on 400 days and one more run: the first ones are older than
    a one-year horizon, the last is not."""
    engine = make_engine({"d": finding_definition("d")}, accounts=accounts, **kw)
    start = engine.clock.now()
    old = []
    for w in range(weeks):
        engine.clock.advance_to(start + w * WEEK)
        old += engine.fire("d", start + w * WEEK)
    engine.clock.advance_to(start + dt.timedelta(days=400))
    return engine, old, engine.fire("d")


def _counts(engine: Engine) -> dict[str, int]:
    """Rows in every table of the workspace's schema."""
    with engine.ws.read() as conn:
        return {name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for name, t in metadata.tables.items()}


def _runs(engine: Engine) -> set[str]:
    with engine.ws.read() as conn:
        return set(conn.execute(sa.text("SELECT run_id FROM runs")).scalars())


def _apply(engine: Engine, root: Path, years: int = 1) -> retention_commands.RetentionReport:
    return retention_commands.apply_retention(engine, actor(engine, "admin"), years, root)


def test_apply_archives_old_runs_and_the_chain_verifies_live_and_whole(make_engine: Any, tmp_path: Path) -> None:
    engine, old, recent = _old_runs(make_engine)
    root, admin = tmp_path / "archive", actor(engine, "admin")
    entries_before = scalar(engine, "SELECT count(*) FROM audit_log")
    before = _counts(engine)

    plan = retention_commands.plan_retention(engine, admin, 1, root)
    # The plan writes nothing but its own audit entry, and names what apply would do.
    assert _counts(engine) == {**before, "audit_log": before["audit_log"] + 1}
    assert not root.exists()
    assert plan.plan.run_ids == sorted(old) and plan.plan.audit is not None and plan.plan.audit.first_seq == 1
    assert any(line.startswith(f"would archive as {plan.plan.archive_id}: 3 runs, 6 items") for line in plan.lines())
    [planned] = audit_of(engine, "retention.planned")
    assert planned["payload"]["runs"] == 3 and planned["actor"] == "member:admin"

    report = _apply(engine, root)
    p = report.plan
    assert report.folder == root / p.archive_id and p.archive_id == plan.plan.archive_id
    assert _runs(engine) == set(recent)
    assert scalar(engine, "SELECT count(*) FROM run_items WHERE run_id IN ('" + "','".join(old) + "')") == 0
    assert scalar(engine, "SELECT count(*) FROM findings") == 2  # the recent run's records stay
    manifest = json.loads((report.folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {f"{name}.parquet" for name, _ in retention_store.ARCHIVE_FILE_TABLES}
    assert manifest["files"]["runs.parquet"]["rows"] == 3 and manifest["files"]["findings.parquet"]["rows"] == 6
    assert pq.read_table(report.folder / "runs.parquet").column("run_id").to_pylist() == sorted(old)
    for name, entry in manifest["files"].items():
        assert archive_files.file_sha256(report.folder / name) == entry["sha256"]
    # The checkpoint: appended, holding the span's numbers and hashes and the manifest's hash.
    [checkpoint] = audit_of(engine, CHECKPOINT_EVENT)
    span = checkpoint["payload"]
    assert span["first_seq"] == 1 and span["first_prev_hash"] == GENESIS_HASH
    assert span["manifest_sha256"] == archive_files.file_sha256(report.folder / "manifest.json")
    first_live = scalar(engine, "SELECT min(seq) FROM audit_log")
    assert first_live == span["last_seq"] + 1
    assert scalar(engine, f"SELECT prev_hash FROM audit_log WHERE seq = {first_live}") == span["last_hash"]
    assert scalar(engine, "SELECT manifest_sha256 FROM retention_archives") == span["manifest_sha256"]

    live = engine.ws.verify_audit()
    assert live.intact and live.first_seq == first_live and live.checkpoint == p.archive_id
    whole = engine.ws.verify_audit([root])
    assert whole.intact and whole.first_seq == 1 and whole.archived_entries == span["last_seq"]
    assert whole.entries == entries_before + 2  # the plan's entry and the checkpoint
    # Nothing more is due at the same horizon.
    assert _apply(engine, root).plan.empty

    engine.ws.close()
    out: list[str] = []
    assert main(["--db", engine.ws.path, "verify-audit"], out=out.append) == 0
    assert f"the checkpoint of {p.archive_id} records those before" in out[0]
    assert main(["--db", engine.ws.path, "verify-audit", "--archive", str(root)], out=out.append) == 0
    assert out[-1].startswith(f"audit chain intact: {entries_before + 2} entries")


def test_a_tampered_archive_is_caught_naming_the_file(make_engine: Any, tmp_path: Path) -> None:
    engine, _, _ = _old_runs(make_engine, weeks=2)
    root = tmp_path / "archive"
    folder = _apply(engine, root).folder
    assert folder is not None
    items = pq.read_table(folder / "run_items.parquet").to_pylist()
    items[0]["outcome"] = "failed"  # the evidence rewritten
    pq.write_table(pq.read_table(folder / "run_items.parquet").from_pylist(
        items, schema=pq.read_schema(folder / "run_items.parquet")), folder / "run_items.parquet")
    verdict = engine.ws.verify_audit([root])
    assert not verdict.intact and "run_items.parquet does not match its SHA-256 in the manifest" in verdict.problem
    assert engine.ws.verify_audit().intact  # the live chain is not the archive

    # A manifest rewritten to match is caught by the checkpoint that recorded the manifest's hash.
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["run_items.parquet"]["sha256"] = archive_files.file_sha256(folder / "run_items.parquet")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    verdict = engine.ws.verify_audit([root])
    assert not verdict.intact and "manifest.json does not match the SHA-256 its checkpoint" in verdict.problem

    # An archived audit entry altered (and its file's hash and the manifest's made to match) breaks the chain.
    shutil.copytree(folder, tmp_path / "copy")
    entries = pq.read_table(folder / "audit_log.parquet").to_pylist()
    entries[3]["actor"] = "member:someone-else"
    pq.write_table(pq.read_table(folder / "audit_log.parquet").from_pylist(
        entries, schema=pq.read_schema(folder / "audit_log.parquet")), folder / "audit_log.parquet")
    manifest["files"]["audit_log.parquet"]["sha256"] = archive_files.file_sha256(folder / "audit_log.parquet")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    verdict = engine.ws.verify_audit([root])
    assert not verdict.intact and verdict.first_broken_seq == 4 and "entry 4 was altered" in verdict.problem

    engine.ws.close()
    out: list[str] = []
    assert main(["--db", engine.ws.path, "verify-audit", "--archive", str(root)], out=out.append) == 3
    assert "audit chain BROKEN at entry 4" in out[0]


def test_a_missing_prefix_no_checkpoint_records_is_refused_naming_the_gap(make_engine: Any) -> None:
    engine, _, _ = _old_runs(make_engine, weeks=1)
    with engine.ws.transaction() as tx:
        tx.conn.execute(audit_log.delete().where(audit_log.c.seq <= 5))
    verdict = engine.ws.verify_audit()
    assert not verdict.intact and verdict.first_broken_seq == 1
    assert verdict.problem.startswith("entries 1–5 are missing and no checkpoint records their archiving")


def test_holds_keep_a_run_and_every_run_of_a_subject(make_engine: Any, tmp_path: Path) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=2)
    start, root, admin = engine.clock.now(), tmp_path / "archive", actor(engine, "admin")
    runs = []
    for w in range(4):
        if w == 2:  # a third account appears: only the last two old runs have an item of it
            with engine.ws.transaction() as tx:
                insert_subjects(tx, "accounts", account_rows(3)[2:])
        engine.clock.advance_to(start + w * WEEK)
        runs += engine.fire("d", start + w * WEEK)
    engine.clock.advance_to(start + dt.timedelta(days=400))

    with pytest.raises(NotAuthorized, match="sigrid may not manage retention"):
        hold_commands.place_run_hold(engine, actor(engine, "sigrid"), runs[1], "litigation")
    run_hold = hold_commands.place_run_hold(engine, admin, runs[1], "litigation 2027-14")
    subject_hold = hold_commands.place_subject_hold(engine, admin, "accounts", "ACC-003", "regulator's request")
    [placed, _] = audit_of(engine, "hold.placed")
    assert placed["entity_id"] == run_hold and placed["payload"]["run_id"] == runs[1]

    plan = retention_commands.plan_retention(engine, admin, 1, root).plan
    assert plan.run_ids == [runs[0]]
    assert {r: h.hold_id for r, h in plan.held.items()} == {runs[1]: run_hold, runs[2]: subject_hold,
                                                           runs[3]: subject_hold}
    assert "accounts ACC-003 is on hold" in plan.held[runs[2]].why
    # The audit prefix stops before the first entry about a held run.
    assert plan.audit is not None and plan.audit_stop is not None and runs[1] in plan.audit_stop
    first_held = min(e["seq"] for e in audit_of(engine) if runs[1] in e["entity_id"])
    assert plan.audit.last_seq < first_held

    about_held = [e for e in audit_of(engine) if runs[1] in e["entity_id"]]
    report = _apply(engine, root)
    assert _runs(engine) >= {runs[1], runs[2], runs[3]} and runs[0] not in _runs(engine)
    assert scalar(engine, f"SELECT count(*) FROM run_items WHERE run_id = '{runs[2]}'") == 3
    assert [e for e in audit_of(engine) if runs[1] in e["entity_id"]] == about_held  # all still live
    assert engine.ws.verify_audit([root]).intact

    # Released, what they held goes with the next apply; the whole chain runs through both archives.
    hold_commands.release_hold(engine, admin, run_hold, "settled")
    hold_commands.release_hold(engine, admin, subject_hold)
    assert [e["entity_id"] for e in audit_of(engine, "hold.released")] == [run_hold, subject_hold]
    second = _apply(engine, root)
    assert second.plan.run_ids == sorted(runs[1:]) and len(list(root.iterdir())) == 2
    whole = engine.ws.verify_audit([root])
    assert whole.intact and whole.first_seq == 1
    missing = engine.ws.verify_audit([root / report.plan.archive_id])
    assert not missing.intact and f"archive {second.plan.archive_id}" in missing.problem


def test_a_crash_between_files_loses_nothing_and_the_next_apply_finishes(make_engine: Any, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    engine, old, _ = _old_runs(make_engine, weeks=2)
    root, before = tmp_path / "archive", _counts(engine)
    real, written = archive_files.write_table_file, []

    def crash_on_third(*args: Any) -> Any:
        if len(written) == 2:
            raise OSError("power lost")
        written.append(args[2])
        return real(*args)

    monkeypatch.setattr(archive_files, "write_table_file", crash_on_third)
    with pytest.raises(OSError, match="power lost"):
        _apply(engine, root)
    assert _counts(engine) == before and engine.ws.verify_audit().intact
    assert [p.name.endswith(".partial") for p in root.iterdir()] == [True]

    monkeypatch.setattr(archive_files, "write_table_file", real)
    report = _apply(engine, root)
    assert report.removed and ".partial" in report.removed[0]
    assert [p.name for p in root.iterdir()] == [report.plan.archive_id]
    assert not _runs(engine) & set(old) and engine.ws.verify_audit([root]).intact


def test_a_crash_after_the_rename_or_inside_the_commit_loses_nothing(make_engine: Any, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    engine, old, _ = _old_runs(make_engine, weeks=2)
    root, before, admin = tmp_path / "archive", _counts(engine), actor(engine, "admin")

    # Inside the transaction, after the rows were deleted: rolled back whole.
    def crash(*args: Any, **kw: Any) -> None:
        raise OSError("killed mid-commit")

    monkeypatch.setattr(retention_store, "record_archive", crash)
    with pytest.raises(OSError, match="mid-commit"):
        _apply(engine, root)
    assert _counts(engine) == before and engine.ws.verify_audit().intact
    [folder] = root.iterdir()
    monkeypatch.undo()

    # After the rename, before the commit: the complete archive waits; plan says apply would finish it.
    plan = retention_commands.plan_retention(engine, admin, 1, root)
    assert plan.pending == [f"would finish {folder.name}, which an interrupted apply wrote"]
    monkeypatch.setattr(retention_commands, "commit_archive", crash)
    with pytest.raises(OSError):
        retention_commands.apply_retention(engine, admin, 1, root)
    monkeypatch.undo()
    assert _counts(engine) == {**before, "audit_log": before["audit_log"] + 1}  # the plan's entry only
    assert [p.name for p in root.iterdir()] == [folder.name]

    report = _apply(engine, root)
    assert report.finished == [folder.name] and report.plan.empty
    assert not _runs(engine) & set(old)
    assert scalar(engine, "SELECT archive_id FROM retention_archives") == folder.name
    assert engine.ws.verify_audit([root]).intact


def test_an_archive_the_workspace_no_longer_matches_is_removed_not_applied(make_engine: Any, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    engine, old, _ = _old_runs(make_engine, weeks=2)
    root, admin = tmp_path / "archive", actor(engine, "admin")
    monkeypatch.setattr(retention_commands, "commit_archive", lambda *a: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError):
        _apply(engine, root)
    monkeypatch.undo()
    [stale] = root.iterdir()
    hold_commands.place_run_hold(engine, admin, old[0], "a new matter")  # the plan changes: a different archive
    report = _apply(engine, root)
    assert any(str(stale) in r for r in report.removed) and report.plan.run_ids == [old[1]]
    assert old[0] in _runs(engine) and engine.ws.verify_audit([root]).intact


def test_the_retention_years_setting_and_its_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNLEDGER_RETENTION_YEARS", raising=False)
    assert retention_commands.retention_years() == 7
    monkeypatch.setenv("RUNLEDGER_RETENTION_YEARS", "10")
    assert retention_commands.retention_years() == 10 and retention_commands.retention_years(2) == 2
    monkeypatch.setenv("RUNLEDGER_RETENTION_YEARS", "seven")
    with pytest.raises(ValueError, match="RUNLEDGER_RETENTION_YEARS must be a whole number of years"):
        retention_commands.retention_years()
    now = dt.datetime(2028, 2, 29, 15, 30, tzinfo=dt.UTC)
    assert retention_store.horizon_for(now, 1) == dt.datetime(2027, 2, 28, tzinfo=dt.UTC)


def test_retention_and_holds_on_both_backends(make_engine: Any, tmp_path: Path, workspace_db: str) -> None:
    engine, old, recent = _old_runs(make_engine, weeks=2, db=workspace_db)
    hold_commands.place_subject_hold(engine, actor(engine, "admin"), "accounts", "ACC-002", "a complaint")
    assert retention_commands.plan_retention(engine, actor(engine, "admin"), 1, tmp_path / "a").plan.run_ids == []
    [hold] = hold_commands.list_holds(engine)
    hold_commands.release_hold(engine, actor(engine, "admin"), hold["hold_id"])
    report = _apply(engine, tmp_path / "a")
    assert report.plan.run_ids == sorted(old) and _runs(engine) == set(recent)
    assert engine.ws.verify_audit().intact and engine.ws.verify_audit([tmp_path / "a"]).intact
    with engine.ws.read() as conn:  # the analytics' sums forgot the archived runs with them (store/rollups.py)
        kept = read_rollup_tables(conn)
        assert kept == recompute_rollups(conn) and sum(v["runs"] for v in kept[0].values()) == len(recent)


@pytest.mark.slow  # about a hundred runs, each through the real executor
def test_two_years_of_weekly_runs_keep_verify_audit_green_after_a_one_year_apply(make_engine: Any,
                                                                                  tmp_path: Path) -> None:
    engine = make_engine({"d": finding_definition("d")}, accounts=1)
    start, root = engine.clock.now(), tmp_path / "archive"
    for w in range(105):
        engine.clock.advance_to(start + w * WEEK)
        engine.fire("d", start + w * WEEK)
    report = _apply(engine, root)  # on the engine's simulated clock, two years on
    assert 50 <= len(report.plan.run_ids) <= 53 and report.plan.audit is not None
    kept = scalar(engine, "SELECT min(triggered_at) FROM runs")
    assert report.plan.horizon <= kept < report.plan.horizon + WEEK
    engine.ws.close()
    out: list[str] = []
    assert main(["--db", engine.ws.path, "verify-audit"], out=out.append) == 0
    assert main(["--db", engine.ws.path, "verify-audit", "--archive", str(root)], out=out.append) == 0
    assert out[-1].startswith("audit chain intact") and "re-hashed from the archives, from entry 1" in out[-1]


def test_the_command_line_places_lists_and_releases_holds_and_plans(make_engine: Any, tmp_path: Path) -> None:
    engine, old, _ = _old_runs(make_engine, weeks=1)
    engine.ws.close()
    db, out = engine.ws.path, []
    base = ["--db", db, "--definitions", str(tmp_path / "definitions")]
    assert main([*base, "hold", "place", "run", old[0], "--reason", "litigation", "--as", "sigrid"],
                out=out.append) == 1
    assert out[-1].startswith("refused: sigrid may not manage retention")
    assert main([*base, "hold", "place", "run", old[0], "--reason", "litigation", "--as", "admin"],
                out=out.append) == 0
    assert out[-1].startswith(f"HOLD-000001: run {old[0]} is on hold")
    assert main([*base, "hold", "place", "subject", "accounts", "ACC-404", "--reason", "x", "--as", "admin"],
                out=out.append) == 1
    assert main([*base, "hold", "list"], out=out.append) == 0
    assert out[-1].startswith(f"HOLD-000001  run {old[0]}  — litigation") and "standing" in out[-1]
    assert main([*base, "hold", "release", "HOLD-000001", "--as", "admin"], out=out.append) == 0
    assert main([*base, "hold", "release", "HOLD-000001", "--as", "admin"], out=out.append) == 1
    assert main([*base, "retention", "plan", "--as", "admin", "--years", "3", "--archive", str(tmp_path / "a")],
                out=out.append) == 0
    assert any(line.startswith("horizon ") and "(3 years)" in line for line in out)
    assert not (tmp_path / "a").exists()
