"""Archives on disk: the Parquet files a retention apply writes, their manifest, and verifying them.

An archive is a folder ``<root>/<archive id>/`` holding one Parquet file per table (``store.retention
.ARCHIVE_FILE_TABLES``, empty ones included, so a reader always finds every table) and ``manifest.json``:
what the archive holds, and each file's SHA-256. The manifest's own SHA-256 is in the workspace twice: in the
checkpoint entry of the audit chain (``audit.archived``) and in ``retention_archives``.

Verifying the whole chain given the archives (``verify_audit_with_archives``): each file against the manifest
(naming the file that does not match), each archive's audit entries re-hashed in order from genesis (or from
the checkpoint before the first archive given), each manifest against the checkpoint that recorded it, and the
live chain linked to the last archived entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from store.audit import CHECKPOINT_EVENT, GENESIS_HASH, ChainVerdict, entry_hash, read_checkpoints, verify_audit_chain
from store.retention import ARCHIVE_FILE_TABLES, AUDIT_TABLE, RetentionPlan, archived_rows

MANIFEST = "manifest.json"
FORMAT = "runledger-archive/1"
PARTIAL = ".partial"


class ArchiveUnreadable(ValueError):
    """A folder given as an archive that holds none, or whose manifest cannot be read."""


def arrow_schema(table: sa.Table) -> pa.Schema:
    """The Parquet schema of a workspace table: timestamps in UTC to the microsecond, as the chain hashes them."""
    fields = []
    for col in table.columns:
        t = col.type
        if isinstance(t, sa.DateTime):
            kind: pa.DataType = pa.timestamp("us", tz="UTC")
        elif isinstance(t, sa.Date):
            kind = pa.date32()
        elif isinstance(t, sa.Boolean):
            kind = pa.bool_()
        elif isinstance(t, sa.Integer):
            kind = pa.int64()
        elif isinstance(t, sa.Float):
            kind = pa.float64()
        else:
            kind = pa.string()
        fields.append(pa.field(col.name, kind, nullable=True))
    return pa.schema(fields)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_table_file(conn: sa.Connection, plan: RetentionPlan, name: str, table: sa.Table,
                     folder: Path) -> dict[str, Any]:
    """One table's archived rows as ``<name>.parquet``, synced to disk; its manifest entry."""
    path = folder / f"{name}.parquet"
    schema = arrow_schema(table)
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in archived_rows(conn, plan, name):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            rows += len(batch)
        if rows == 0:
            writer.write_table(schema.empty_table())
    _fsync(path)
    return {"sha256": file_sha256(path), "rows": rows, "bytes": path.stat().st_size}


def write_archive(conn: sa.Connection, plan: RetentionPlan, folder: Path, written_at: str) -> str:
    """Every file of the archive, then its manifest, each synced; the manifest's SHA-256."""
    files = {f"{name}.parquet": write_table_file(conn, plan, name, table, folder)
             for name, table in ARCHIVE_FILE_TABLES}
    manifest = {
        "format": FORMAT, "archive_id": plan.archive_id, "horizon": plan.horizon.isoformat(),
        "written_at": written_at, "runs": plan.run_ids, "items": plan.items,
        "audit": plan.audit.as_dict() if plan.audit else None, "files": files,
        "held_back": {h.run_id: {"hold_id": h.hold_id, "why": h.why} for h in plan.held.values()},
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _fsync(path)
    _fsync(folder)
    return file_sha256(path)


def fsync_folder(folder: Path) -> None:
    _fsync(folder)


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArchiveUnreadable(f"{folder / MANIFEST} cannot be read ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "files" not in manifest:
        raise ArchiveUnreadable(f"{folder / MANIFEST} is not a Runledger archive manifest ({FORMAT})")
    return manifest


def check_files(folder: Path, manifest: dict[str, Any]) -> str | None:
    """The first file of the archive that is missing or no longer matches its SHA-256 in the manifest."""
    name = manifest.get("archive_id", folder.name)
    for file_name, entry in sorted(manifest["files"].items()):
        path = folder / file_name
        if not path.is_file():
            return f"archive {name}: {file_name} is missing from {folder}"
        if file_sha256(path) != entry.get("sha256"):
            return (f"archive {name}: {file_name} does not match its SHA-256 in the manifest "
                    f"(the file was changed or replaced)")
    return None


def find_archives(folders: Iterable[str | Path]) -> list[Path]:
    """Each folder given, as an archive (it holds a manifest) or as the root of archives (its subfolders that
    do; an unfinished ``.partial`` is not an archive)."""
    found: list[Path] = []
    for given in folders:
        folder = Path(given)
        if (folder / MANIFEST).is_file():
            found.append(folder)
        elif folder.is_dir():
            found += sorted(p for p in folder.iterdir()
                            if p.is_dir() and not p.name.endswith(PARTIAL) and (p / MANIFEST).is_file())
        else:
            raise ArchiveUnreadable(f"{folder} is not a folder")
    if not found:
        raise ArchiveUnreadable(f"no archive (a folder with {MANIFEST}) in {', '.join(map(str, folders))}")
    return found


def read_audit_entries(folder: Path) -> list[dict[str, Any]]:
    return pq.read_table(folder / f"{AUDIT_TABLE}.parquet").to_pylist()


def verify_audit_with_archives(conn: sa.Connection, folders: Sequence[str | Path]) -> ChainVerdict:
    """The whole chain: the live one, and every span archived before it, from the archives given."""
    live = verify_audit_chain(conn)
    if not live.intact:
        return live

    def broken(problem: str, seq: int | None = None) -> ChainVerdict:
        return ChainVerdict(False, live.entries, live.head_hash, seq, problem, live.first_seq, live.checkpoint)

    try:
        archives = [(folder, read_manifest(folder)) for folder in find_archives(folders)]
    except ArchiveUnreadable as exc:
        return broken(str(exc))
    for folder, manifest in archives:
        problem = check_files(folder, manifest)
        if problem:
            return broken(problem)
    spans = {int(m["audit"]["first_seq"]): (f, m) for f, m in archives if m.get("audit")}
    try:
        entries = {first: read_audit_entries(f) for first, (f, _) in spans.items()}
    except (OSError, pa.ArrowException) as exc:
        return broken(f"an archive's {AUDIT_TABLE}.parquet cannot be read ({exc})")
    # Every checkpoint the chain holds (live, or archived with the spans after it), by archive.
    checkpoints: dict[str, dict[str, Any]] = {}
    for rows in entries.values():
        for e in rows:
            if e["event"] == CHECKPOINT_EVENT:
                checkpoints[json.loads(e["payload"])["archive_id"]] = {**json.loads(e["payload"]), "seq": e["seq"]}
    for c in read_checkpoints(conn):
        checkpoints[c["archive_id"]] = c
    by_span = {int(c["first_seq"]): c for c in checkpoints.values() if c.get("first_seq") is not None}

    start = min(spans, default=live.first_seq)
    if start == 1:
        prev, after = GENESIS_HASH, None
    else:
        before = next((c for c in checkpoints.values() if c.get("last_seq") == start - 1), None)
        if before is None:
            return broken(f"entries 1–{start - 1} are not in the archives given and no checkpoint records them", 1)
        prev, after = str(before["last_hash"]), before
    expected, count, verified = start, 0, set()
    while expected < live.first_seq:
        if expected not in spans:
            holder = by_span.get(expected)
            where = (f"archive {holder['archive_id']} (entries {expected}–{holder['last_seq']})" if holder
                     else "an archive no checkpoint names")
            return broken(f"entry {expected} is archived in {where}, which was not given; pass its folder with "
                          "--archive", expected)
        folder, manifest = spans[expected]
        name = manifest["archive_id"]
        for e in entries[expected]:
            seq = int(e["seq"])
            if seq != expected:
                return broken(f"archive {name}: entry {expected} is missing from {AUDIT_TABLE}.parquet", expected)
            if e["prev_hash"] != prev:
                return broken(f"archive {name}: entry {seq} does not link to entry {seq - 1}", seq)
            if entry_hash(seq, e["occurred_at"], e["actor"], e["event"], e["entity_kind"], e["entity_id"],
                          e["payload"], e["prev_hash"]) != e["hash"]:
                return broken(f"archive {name}: entry {seq} was altered: its content no longer matches its hash", seq)
            prev, expected, count = e["hash"], expected + 1, count + 1
            verified.add(seq)
        if expected - 1 != int(manifest["audit"]["last_seq"]) or prev != manifest["audit"]["last_hash"]:
            return broken(f"archive {name}: its audit entries end at {expected - 1}, not at the span its manifest "
                          f"records ({manifest['audit']['first_seq']}–{manifest['audit']['last_seq']})", expected)
    if after is not None and int(after["seq"]) not in verified and int(after["seq"]) < live.first_seq:
        return broken(f"the checkpoint of {after['archive_id']} (entry {after['seq']}) was not verified", start)
    if live.first_seq > 1 and live.checkpoint is not None and checkpoints[live.checkpoint]["last_hash"] != prev:
        return broken(f"the live chain's checkpoint ({live.checkpoint}) does not match the archived chain's last "
                      "entry", live.first_seq)
    for folder, manifest in archives:
        name = manifest["archive_id"]
        recorded = checkpoints.get(name)
        if recorded is None:
            return broken(f"archive {name} ({folder}): no checkpoint in the chain records it")
        if recorded.get("manifest_sha256") != file_sha256(folder / MANIFEST):
            return broken(f"archive {name}: its {MANIFEST} does not match the SHA-256 its checkpoint (entry "
                          f"{recorded['seq']}) recorded", int(recorded["seq"]))
        if (manifest.get("audit") or {}).get("last_hash") != recorded.get("last_hash"):
            return broken(f"archive {name}: its manifest's audit span differs from its checkpoint's (entry "
                          f"{recorded['seq']})", int(recorded["seq"]))
    return ChainVerdict(True, live.entries + count, live.head_hash, first_seq=start, checkpoint=live.checkpoint,
                        archived_entries=count)
