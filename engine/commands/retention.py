"""Retention: closed runs older than the horizon leave the workspace for an archive of Parquet files.

``plan`` says what ``apply`` would do and writes nothing but its own audit entry (``retention.planned``).
``apply`` is safe to interrupt anywhere, because nothing leaves the workspace before its archive is whole:

1. the archive's files are written to ``<root>/<id>.partial/`` and synced, then its manifest;
2. the folder is renamed to ``<root>/<id>/`` (the id derived from the plan, so a retry finds it);
3. one workspace transaction checks the workspace still holds exactly what the archive does, deletes those
   rows, records the archive (``retention_archives``) and appends the checkpoint entry (``audit.archived``).

A crash before 3 commits leaves the workspace untouched. The next apply removes any ``.partial`` folder,
finishes a complete archive no transaction recorded if the workspace still holds what it does (and removes it
otherwise: everything in it is still in the workspace), and then plans afresh.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.roles import Actor
from engine.authz import check_permission
from engine.commands.refusals import CommandRefused
from engine.settings import number_from_env
from store import archive as archive_files
from store import retention as retention_store
from store.audit import CHECKPOINT_EVENT
from store.retention import RetentionPlan

if TYPE_CHECKING:
    from engine.runtime import Engine

PERMISSION = "manage_retention"
DEFAULT_YEARS = 7
YEARS_ENV = "RUNLEDGER_RETENTION_YEARS"
ARCHIVE_ENV = "RUNLEDGER_ARCHIVE"


def retention_years(explicit: int | None = None) -> int:
    """``--years`` wins, then ``RUNLEDGER_RETENTION_YEARS``, then 7."""
    if explicit is not None:
        if explicit < 1:
            raise CommandRefused(f"--years must be 1 or more, not {explicit}.")
        return explicit
    return int(number_from_env(YEARS_ENV, DEFAULT_YEARS, "years", whole=True))


def default_archive_root(engine: Engine) -> Path:
    """``RUNLEDGER_ARCHIVE``, else ``archive/`` beside a DuckDB workspace (``data/archive`` for PostgreSQL)."""
    if os.environ.get(ARCHIVE_ENV):
        return Path(os.environ[ARCHIVE_ENV])
    if engine.ws.is_duckdb and engine.ws.path != ":memory:":
        return Path(engine.ws.path).resolve().parent / "archive"
    return Path("data/archive")


@dataclass
class RetentionReport:
    """What a plan found, or an apply did."""

    plan: RetentionPlan
    years: int
    root: Path
    applied: bool = False
    folder: Path | None = None
    manifest_sha256: str | None = None
    finished: list[str] = field(default_factory=list)  # archives an interrupted apply left, finished now
    removed: list[str] = field(default_factory=list)  # unfinished or stale folders removed
    pending: list[str] = field(default_factory=list)  # (plan) what apply would finish or remove first

    def lines(self) -> list[str]:
        p = self.plan
        out = [f"{m}" for m in self.pending]
        out += [f"finished {a}, which an interrupted apply had written" for a in self.finished]
        out += [f"removed {r}" for r in self.removed]
        out.append(f"horizon {p.horizon:%Y-%m-%d} ({self.years} years): closed runs triggered before it are archived")
        if p.empty:
            out.append("nothing to archive" + (" now" if self.applied else ""))
        else:
            verb = "archived" if self.applied else "would archive"
            out.append(f"{verb} as {p.archive_id}: {len(p.run_ids)} runs, {p.items} items, {p.total_rows} rows")
            for table, n in p.rows.items():
                if n:
                    out.append(f"  {table}: {n}")
            if p.audit:
                out.append(f"  audit entries {p.audit.first_seq}–{p.audit.last_seq} (the checkpoint entry "
                           f"{'holds' if self.applied else 'will hold'} their hashes)")
            if p.run_ids:
                shown = ", ".join(p.run_ids[:10]) + (f", … ({len(p.run_ids) - 10} more)" if len(p.run_ids) > 10 else "")
                out.append(f"  runs: {shown}")
        if p.audit_stop:
            out.append(f"audit entries stop before {p.audit_stop.removeprefix('entry ')}")
        for h in list(p.held.values())[:20]:
            out.append(f"held back: {h.run_id}: {h.why} ({h.hold_id}: {h.reason})")
        if len(p.held) > 20:
            out.append(f"held back: … and {len(p.held) - 20} more runs under hold")
        if p.still_open:
            out.append(f"kept: {len(p.still_open)} runs triggered before the horizon are still open "
                       f"({', '.join(p.still_open[:5])}{', …' if len(p.still_open) > 5 else ''})")
        if self.applied and self.folder is not None:
            out.append(f"archive {self.folder} (manifest sha256 {self.manifest_sha256})")
            out.append(f"verify: python -m engine verify-audit --archive {self.root}")
        return out


def _recorded(engine: Engine) -> set[str]:
    with engine.ws.read() as conn:
        return {r["archive_id"] for r in retention_store.read_archive_records(conn)}


def _leftovers(engine: Engine, root: Path) -> tuple[list[Path], list[Path]]:
    """Unfinished (``.partial``) folders, and complete archives no transaction recorded."""
    if not root.is_dir():
        return [], []
    recorded = _recorded(engine)
    partial = sorted(p for p in root.iterdir() if p.is_dir() and p.name.endswith(archive_files.PARTIAL))
    unrecorded = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.endswith(archive_files.PARTIAL)
                        and (p / archive_files.MANIFEST).is_file() and p.name not in recorded)
    return partial, unrecorded


def _resumable(engine: Engine, folder: Path) -> RetentionPlan | None:
    """The plan a complete, unrecorded archive was written for, if the workspace still holds exactly it."""
    try:
        manifest = archive_files.read_manifest(folder)
    except archive_files.ArchiveUnreadable:
        return None
    if manifest.get("archive_id") != folder.name or archive_files.check_files(folder, manifest) is not None:
        return None
    with engine.ws.read() as conn:
        plan = retention_store.plan_retention(conn, dt.datetime.fromisoformat(manifest["horizon"]))
    return plan if plan.archive_id == folder.name else None


def plan_retention(engine: Engine, actor: Actor, years: int | None = None,
                   archive_root: str | Path | None = None) -> RetentionReport:
    """What ``apply_retention`` would do now; audited as ``retention.planned``, nothing else written."""
    check_permission(engine.ws, actor, PERMISSION, "retention", "plan")
    n = retention_years(years)
    root = Path(archive_root) if archive_root else default_archive_root(engine)
    partial, unrecorded = _leftovers(engine, root)
    pending = [f"would remove {p}, an unfinished archive" for p in partial]
    for folder in unrecorded:
        pending.append(f"would finish {folder.name}, which an interrupted apply wrote" if _resumable(engine, folder)
                       else f"would remove {folder}, an archive the workspace no longer matches (nothing of it "
                            "left the workspace)")
    with engine.ws.read() as conn:
        plan = retention_store.plan_retention(conn, retention_store.horizon_for(engine.clock.now(), n))
    with engine.ws.transaction() as tx:
        tx.audit(actor.audit_name, "retention.planned", "retention_archive", plan.archive_id,
                 {**plan.summary(), "years": n})
    return RetentionReport(plan, n, root, pending=pending)


def apply_retention(engine: Engine, actor: Actor, years: int | None = None,
                    archive_root: str | Path | None = None) -> RetentionReport:
    """Archive and remove what the plan names (finishing first what an interrupted apply left)."""
    check_permission(engine.ws, actor, PERMISSION, "retention", "apply")
    n = retention_years(years)
    root = Path(archive_root) if archive_root else default_archive_root(engine)
    root.mkdir(parents=True, exist_ok=True)
    partial, unrecorded = _leftovers(engine, root)
    removed, finished = [], []
    for folder in partial:
        shutil.rmtree(folder)
        removed.append(f"{folder}, an unfinished archive")
    for folder in unrecorded:
        plan = _resumable(engine, folder)
        if plan is None:
            shutil.rmtree(folder)
            removed.append(f"{folder}, an archive the workspace no longer matches (nothing of it had left the "
                           "workspace)")
        else:
            commit_archive(engine, actor, plan, folder)
            finished.append(folder.name)
    with engine.ws.read() as conn:
        plan = retention_store.plan_retention(conn, retention_store.horizon_for(engine.clock.now(), n))
    report = RetentionReport(plan, n, root, applied=True, finished=finished, removed=removed)
    if plan.empty:
        return report
    folder = write_archive_folder(engine, plan, root)
    report.folder, report.manifest_sha256 = folder, commit_archive(engine, actor, plan, folder)
    return report


def write_archive_folder(engine: Engine, plan: RetentionPlan, root: Path) -> Path:
    """Steps 1 and 2: the files in ``<id>.partial/``, synced, then renamed to ``<id>/``."""
    final = root / plan.archive_id
    partial = root / f"{plan.archive_id}{archive_files.PARTIAL}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    with engine.ws.read() as conn:
        archive_files.write_archive(conn, plan, partial, engine.clock.now().isoformat())
    os.replace(partial, final)
    archive_files.fsync_folder(root)
    return final


def commit_archive(engine: Engine, actor: Actor, plan: RetentionPlan, folder: Path) -> str:
    """Step 3, in one transaction: remove what the archive holds, record it, append the checkpoint. Refused (and
    nothing removed) if the workspace no longer holds exactly what the archive does. Returns the manifest's
    SHA-256."""
    manifest_sha256 = archive_files.file_sha256(folder / archive_files.MANIFEST)
    with engine.ws.transaction() as tx:
        again = retention_store.plan_retention(tx.conn, plan.horizon)
        if again.archive_id != plan.archive_id or again.rows != plan.rows:
            raise CommandRefused(f"The workspace changed while {plan.archive_id} was written (a hold placed or "
                                 "released, a run retried); nothing was removed. Run apply again: it plans afresh.")
        deleted = retention_store.remove_archived(tx, plan)
        if deleted != plan.rows:
            raise CommandRefused(f"{plan.archive_id}: the rows to remove ({deleted}) are not the rows archived "
                                 f"({plan.rows}); nothing was removed.")
        retention_store.record_archive(tx, plan, str(folder), manifest_sha256, actor.audit_name)
        tx.audit(actor.audit_name, CHECKPOINT_EVENT, "retention_archive", plan.archive_id, _checkpoint(
            plan, manifest_sha256, folder))
    return manifest_sha256


def _checkpoint(plan: RetentionPlan, manifest_sha256: str, folder: Path) -> dict[str, Any]:
    span = plan.audit
    return {"archive_id": plan.archive_id, "horizon": plan.horizon.isoformat(), "manifest_sha256": manifest_sha256,
            "first_seq": span.first_seq if span else None, "last_seq": span.last_seq if span else None,
            "first_prev_hash": span.first_prev_hash if span else None, "last_hash": span.last_hash if span else None,
            "runs": len(plan.run_ids), "items": plan.items, "rows": plan.total_rows, "location": str(folder)}
