"""The evidence bundle of one run: a zip an auditor takes away and checks offline.

It holds the run, every item, attempt and approval, the definition's text at the version that ran, the
trigger event, every audit entry about the run exactly as stored (so each hash can be recomputed), the
file's provenance, a manifest of SHA-256 sums and a standard-library verifier. Making it is a member
action: the ``export`` permission is checked first and the zip's SHA-256 is written to the audit log, which
is what later proves a given zip is the one Runledger produced.

Everything is read on one connection, so the bundle is one consistent snapshot even while the engine
writes; items, attempts and entries are read in keyset pages and written to the zip as they come, so a
run of 100,000 items never sits in memory as rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from core.roles import Actor
from core.states import TERMINAL_RUN_STATUSES
from engine.commands import NotFound
from reporting.provenance import Provenance, begin_export, record_export
from store.audit import format_ts, read_chain_head
from store.views.bundle import iter_run_approvals, iter_run_attempts, iter_run_audit_entries, iter_run_items
from store.views.run_pages import read_run_detail
from store.workspace import Workspace

if TYPE_CHECKING:
    from engine.runtime import Engine

VERIFIER_SOURCE = Path(__file__).with_name("bundle_verify.py")
BUNDLE_FORMAT = 1

README = """\
Runledger evidence bundle of run {run_id}
{underline}

Generated {generated} by {member} from workspace {workspace}.
Every timestamp is UTC, written as ISO 8601 (2026-07-06T06:00:00.000000Z).

What each file is
  run.json             The run row (every column of `runs`), its definition's title, and the definition
                       version that ran with its content hash. "snapshot" names the last audit entry
                       visible when the bundle was read.
  {definition_file:<20} The definition's YAML text exactly as stored for the version that ran; its
                       SHA-256 is the content hash in run.json.
  trigger_event.json   The trigger event that caused the run, with its payload as stored.
  items.jsonl          One JSON object per line: every run item with every column (subject snapshot,
                       rendered parameters and idempotency key exactly as stored, outcome, record_ref,
                       skip reason, failure cause and class, attempt count), in position order.
  attempts.jsonl       Every attempt at every item (who or what started it, when, outcome, cause, record,
                       and what a remote system answered: its status, headers, body digest, remote id).
  approvals.json       The approvals opened for the run's items, with their decisions.
  audit_entries.jsonl  Every audit log entry about the run, its items, its trigger event and earlier
                       exports of this bundle, with every column. "payload" is the exact stored text that
                       was hashed; "hash" and "prev_hash" chain the entries.
  provenance.json      Where this file came from: workspace, generated when and by whom, and the audit
                       chain head at that moment.
  verify_bundle.py     The verifier (Python 3 standard library only).
  manifest.json        SHA-256, size and record count of every other file.

How to verify
  python verify_bundle.py                 (from inside the extracted folder)
  python verify_bundle.py {run_id}-evidence.zip
It recomputes every audit entry's hash, checks the links between consecutive entries, checks the
definition text against its content hash and every file against the manifest. It exits 0 and prints OK
when all hold; otherwise it names the first altered audit entry (by seq) or file and exits non-zero.

Anchoring it to the workspace
  The verifier proves the bundle consistent with itself. To prove it is the one Runledger produced, give
  the zip's SHA-256 to the workspace's owner: the audit log entry `bundle.exported` for {run_id} records
  it. The entry hashes here must equal the workspace's entries of the same seq, and
  `python -m engine verify-audit` proves the workspace's whole chain intact.
"""


def _workspace(source: Engine | Workspace) -> Workspace:
    return source if isinstance(source, Workspace) else source.ws


def _plain(value: Any) -> Any:
    """JSON for a stored value: timestamps in the one UTC spelling the audit hash uses."""
    if isinstance(value, dt.datetime):
        return format_ts(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to the bundle")


# Built once: json.dumps makes a new encoder per call with these options, a cost paid per item.
_line = json.JSONEncoder(default=_plain, ensure_ascii=False).encode
_document = json.JSONEncoder(default=_plain, ensure_ascii=False, indent=2).encode


def _json(value: Any, indent: int | None = 2) -> bytes:
    return (_document if indent else _line)(value).encode("utf-8")


class _BundleWriter:
    """Writes files into the zip under one folder and remembers each one's manifest entry."""

    def __init__(self, zf: zipfile.ZipFile, folder: str, stamp: dt.datetime) -> None:
        self.zf, self.folder = zf, folder
        self.date_time = stamp.astimezone(dt.UTC).timetuple()[:6]
        self.files: dict[str, dict[str, Any]] = {}

    def _info(self, name: str, mode: int = 0o644) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(f"{self.folder}/{name}", date_time=self.date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (0o100000 | mode) << 16
        return info

    def add(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self.zf.writestr(self._info(name, mode), data)
        self.files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    def add_lines(self, name: str, rows: Iterable[dict[str, Any]]) -> int:
        """JSON Lines streamed into the zip, hashed on the way; returns the number of records."""
        digest, size, count = hashlib.sha256(), 0, 0
        with self.zf.open(self._info(name), "w", force_zip64=True) as out:
            chunk: list[bytes] = []
            for row in rows:
                chunk.append(_json(row, indent=None) + b"\n")
                count += 1
                if len(chunk) >= 1000:
                    size += self._flush(out, digest, chunk)
                    chunk = []
            size += self._flush(out, digest, chunk)
        self.files[name] = {"sha256": digest.hexdigest(), "bytes": size, "records": count}
        return count

    @staticmethod
    def _flush(out: IO[bytes], digest: Any, chunk: list[bytes]) -> int:
        data = b"".join(chunk)
        out.write(data)
        digest.update(data)
        return len(data)

    def add_array(self, name: str, rows: Iterable[dict[str, Any]]) -> int:
        rows = list(rows)  # approvals: at most one per item, a few fields each
        self.add(name, _json(rows))
        self.files[name]["records"] = len(rows)
        return len(rows)

    def add_manifest(self, run_id: str) -> None:
        """Last, so that it lists every other file; it cannot list itself."""
        self.zf.writestr(self._info("manifest.json"), _json({
            "bundle": "Runledger run evidence bundle", "format": BUNDLE_FORMAT, "run_id": run_id,
            "algorithm": "sha256", "files": self.files}))


def write_run_bundle(ws: Workspace, run_id: str, provenance: Provenance) -> bytes:
    """The zip's bytes (no authorization here: ``build_run_bundle`` is the member-facing entry)."""
    folder, buffer = run_id, io.BytesIO()
    with ws.read() as conn, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        run = read_run_detail(conn, run_id)  # read again: this connection's snapshot is the bundle's
        if run is None:
            raise NotFound(_not_found(run_id))
        snapshot_seq, snapshot_head = read_chain_head(conn)
        w = _BundleWriter(zf, folder, provenance.generated_at)
        event, version = run.pop("event"), run.pop("version")
        title = run.pop("definition_title")
        definition_file = f"definition-v{run['definition_version']}.yaml"
        definition = {"id": run["definition_id"], "title": title, "version": run["definition_version"]}
        if version is not None:
            definition |= {"file": definition_file, "content_hash": version["content_hash"],
                           "content_hash_algorithm": "sha256 of the UTF-8 text",
                           "authored_by": version["authored_by"], "created_at": version["created_at"]}
            w.add(definition_file, version["content"].encode("utf-8"))
        w.add("run.json", _json({
            "run": run, "definition_title": title, "definition": definition,
            "status_at_export": run["status"] if run["status"] in TERMINAL_RUN_STATUSES else
            f"{run['status']} (the run was still in progress when this bundle was read)",
            "snapshot": {"audit_chain_seq": snapshot_seq, "audit_chain_head": snapshot_head}}))
        w.add("trigger_event.json", _json(event))
        w.add_lines("items.jsonl", iter_run_items(conn, run_id))
        w.add_lines("attempts.jsonl", iter_run_attempts(conn, run_id))
        w.add_array("approvals.json", iter_run_approvals(conn, run_id))
        w.add_lines("audit_entries.jsonl", iter_run_audit_entries(conn, run_id, run["trigger_event_id"]))
        w.add("provenance.json", _json({**provenance.as_dict(), "export": "bundle", "run_id": run_id,
                                        "note": "the zip's own SHA-256 is recorded in the workspace's "
                                                "audit log (entry bundle.exported), not inside the zip"}))
        w.add("verify_bundle.py", VERIFIER_SOURCE.read_bytes(), mode=0o755)
        w.add("README.txt", README.format(
            run_id=run_id, underline="=" * (33 + len(run_id)), generated=format_ts(provenance.generated_at),
            member=provenance.generated_by, workspace=Path(provenance.workspace).name,
            definition_file=definition_file).encode("utf-8"))
        w.add_manifest(run_id)
    return buffer.getvalue()


def _not_found(run_id: str) -> str:
    return (f"There is no run {run_id!r} in this workspace, so there is no evidence to bundle. Check the id "
            "(run ids look like RUN-000042); the Runs page lists every run.")


def _period(run: dict[str, Any]) -> str:
    def t(v: dt.datetime | None) -> str:
        return v.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if v else "not yet"
    return f"run {run['run_id']}: triggered {t(run['triggered_at'])}, completed {t(run['completed_at'])}"


def build_run_bundle(source: Engine | Workspace, actor: Actor, run_id: str) -> tuple[str, bytes]:
    """The evidence bundle of one run as (file name, zip bytes), authorized and audited.

    Raises ``NotFound`` for an unknown run, ``NotAuthorized`` (audited as ``command.refused``) when the
    actor lacks the ``export`` permission. The export is audited as ``bundle.exported`` with the zip's
    SHA-256 once the file exists.
    """
    ws = _workspace(source)
    run_id = run_id.strip()
    with ws.read() as conn:
        run = read_run_detail(conn, run_id)
    if run is None:
        raise NotFound(_not_found(run_id))
    provenance = begin_export(ws, actor, "bundle", run_id, period=_period(run), filters={"run": run_id})
    content = write_run_bundle(ws, run_id, provenance)
    record_export(ws, actor, "bundle", run_id, "zip", content, provenance)
    return f"{run_id}-evidence.zip", content
