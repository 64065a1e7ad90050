"""A run's evidence bundle: what the zip holds (checked against SQL), the offline verifier accepting it
untouched and naming what was altered, the export authorized and audited, the CLI command, and the Run
page's download button."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cli.main import main
from core.links import PAGES
from engine.authz import NotAuthorized, load_actor
from engine.commands import NotFound
from reporting import bundle_verify
from reporting.bundle import build_run_bundle
from store import items as item_store
from store.views.bundle import iter_run_attempts, iter_run_items
from store.workspace import Workspace
from tests.apptest_support import open_app

VERIFIER = Path(__file__).resolve().parent.parent / "reporting" / "bundle_verify.py"
FILES = {"README.txt", "run.json", "items.jsonl", "attempts.jsonl", "trigger_event.json", "approvals.json",
         "audit_entries.jsonl", "provenance.json", "manifest.json", "verify_bundle.py"}


def _copy(demo_quarter_path: str, target: Path) -> str:
    shutil.copyfile(demo_quarter_path, target)
    if Path(demo_quarter_path + ".wal").exists():
        shutil.copyfile(demo_quarter_path + ".wal", str(target) + ".wal")
    return str(target)


@pytest.fixture
def ws(demo_quarter_path: str, tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace(_copy(demo_quarter_path, tmp_path / "ws.duckdb"))
    yield workspace
    workspace.close()


def sql(ws: Workspace, query: str, **params: Any) -> list[tuple]:
    with ws.read() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query), params)]


def kyc_run(ws: Workspace) -> str:
    """The KYC run whose items took the most attempts (the messaging outage's retries)."""
    return sql(ws, "SELECT run_id FROM run_items JOIN runs USING (run_id) WHERE definition_id = "
                   "'kyc-weekly-review' GROUP BY run_id ORDER BY max(attempts) DESC, run_id LIMIT 1")[0][0]


def unpack(content: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        zf.extractall(into)
    [folder] = [p for p in into.iterdir() if p.is_dir()]
    return folder


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").split("\n") if line]


def verify(target: Path) -> subprocess.CompletedProcess[str]:
    script = target / "verify_bundle.py" if target.is_dir() else VERIFIER
    return subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True, timeout=60)


# --- what the bundle holds --------------------------------------------------------------------------------
def test_a_kyc_runs_bundle_holds_every_item_attempt_entry_and_the_definition_text(
        ws: Workspace, tmp_path: Path) -> None:
    run_id = kyc_run(ws)
    name, content = build_run_bundle(ws, load_actor(ws, "sigrid"), run_id)
    assert name == f"{run_id}-evidence.zip"
    folder = unpack(content, tmp_path / "out")
    assert folder.name == run_id
    [(version, event_id)] = sql(ws, "SELECT definition_version, trigger_event_id FROM runs WHERE run_id = :r",
                                r=run_id)
    assert {p.name for p in folder.iterdir()} == FILES | {f"definition-v{version}.yaml"}

    items = lines(folder / "items.jsonl")
    assert len(items) == sql(ws, "SELECT count(*) FROM run_items WHERE run_id = :r", r=run_id)[0][0] > 30
    with ws.read() as conn:
        stored = item_store.read_items(conn, run_id)
    assert [i["item_id"] for i in items] == [i["item_id"] for i in stored]
    assert set(items[0]) == set(stored[0])  # every column
    for key in ("subject_snapshot", "parameters", "idempotency_key", "outcome", "record_ref", "attempts"):
        assert [i[key] for i in items] == [s[key] for s in stored]

    attempts = lines(folder / "attempts.jsonl")
    assert len(attempts) == sql(ws, "SELECT count(*) FROM item_attempts WHERE run_id = :r", r=run_id)[0][0]
    assert any(a["attempt"] == 2 for a in attempts)  # the retries after the outage are there

    [(text, content_hash)] = sql(ws, "SELECT content, content_hash FROM definition_versions "
                                     "WHERE definition_id = 'kyc-weekly-review' AND version = :v", v=version)
    assert (folder / f"definition-v{version}.yaml").read_bytes() == text.encode("utf-8")
    run = json.loads((folder / "run.json").read_text())
    assert run["run"]["run_id"] == run_id and run["definition"]["content_hash"] == content_hash
    assert run["definition_title"] == "Weekly KYC review"
    assert run["run"]["triggered_at"].endswith("Z")
    assert json.loads((folder / "trigger_event.json").read_text())["event_id"] == event_id

    entries = lines(folder / "audit_entries.jsonl")
    expected = sql(ws, "SELECT seq, payload, hash FROM audit_log WHERE (entity_kind = 'run' AND entity_id = :r) "
                       "OR (entity_kind = 'run_item' AND entity_id IN (SELECT item_id FROM run_items "
                       "WHERE run_id = :r)) OR (entity_kind = 'trigger_event' AND entity_id = :e) ORDER BY seq",
                   r=run_id, e=event_id)
    assert [(e["seq"], e["payload"], e["hash"]) for e in entries] == expected  # payload: the stored text
    assert set(entries[0]) == {"seq", "occurred_at", "actor", "event", "entity_kind", "entity_id", "payload",
                               "prev_hash", "hash"}
    assert (folder / "verify_bundle.py").read_bytes() == VERIFIER.read_bytes()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["generated_by"] == "sigrid" and provenance["filters"] == {"run": run_id}


def test_a_runs_approvals_are_bundled(ws: Workspace, tmp_path: Path) -> None:
    [(run_id, n)] = sql(ws, "SELECT run_id, count(*) FROM approvals GROUP BY run_id ORDER BY run_id LIMIT 1")
    folder = unpack(build_run_bundle(ws, load_actor(ws, "sigrid"), run_id)[1], tmp_path / "out")
    approvals = json.loads((folder / "approvals.json").read_text())
    assert len(approvals) == n and approvals[0]["run_id"] == run_id and "decision" in approvals[0]


def test_items_and_attempts_are_read_in_pages_without_gaps(ws: Workspace) -> None:
    run_id = kyc_run(ws)
    with ws.read() as conn:
        paged = [i["item_id"] for i in iter_run_items(conn, run_id, page=7)]
        attempts = [(a["item_id"], a["attempt"]) for a in iter_run_attempts(conn, run_id, page=5)]
        whole = [i["item_id"] for i in item_store.read_items(conn, run_id)]
    assert paged == whole
    assert len(attempts) == len(set(attempts)) == sql(
        ws, "SELECT count(*) FROM item_attempts WHERE run_id = :r", r=run_id)[0][0]


# --- the offline verifier ---------------------------------------------------------------------------------
def test_the_bundled_verifier_accepts_the_untouched_bundle_as_folder_and_as_zip(
        ws: Workspace, tmp_path: Path) -> None:
    _, content = build_run_bundle(ws, load_actor(ws, "sigrid"), kyc_run(ws))
    folder = unpack(content, tmp_path / "out")
    done = verify(folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout and "hashes recomputed" in done.stdout
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(content)
    done = verify(archive)
    assert done.returncode == 0, done.stdout + done.stderr


def _alter_one_payload_byte(path: Path, index: int) -> int:
    """Change one letter inside the payload of the index-th entry; returns that entry's seq."""
    raw = path.read_bytes().split(b"\n")
    line = raw[index]
    start = line.index(b'"payload": "') + len(b'"payload": "')
    at = next(i for i in range(start, len(line)) if chr(line[i]).isalpha())
    raw[index] = line[:at] + bytes([line[at] ^ 0x01]) + line[at + 1:]  # still a letter, still valid JSON
    path.write_bytes(b"\n".join(raw))
    return json.loads(raw[index])["seq"]


def test_one_byte_changed_in_an_entrys_payload_is_named_by_its_seq(ws: Workspace, tmp_path: Path) -> None:
    folder = unpack(build_run_bundle(ws, load_actor(ws, "sigrid"), kyc_run(ws))[1], tmp_path / "out")
    seq = _alter_one_payload_byte(folder / "audit_entries.jsonl", 3)
    done = verify(folder)
    assert done.returncode == 1
    first = [ln for ln in done.stdout.splitlines() if ln.startswith("ALTERED")][0]
    assert f"audit entry seq {seq} was altered" in first


def test_one_byte_changed_in_the_items_is_caught_by_the_manifest(ws: Workspace, tmp_path: Path) -> None:
    folder = unpack(build_run_bundle(ws, load_actor(ws, "sigrid"), kyc_run(ws))[1], tmp_path / "out")
    items = folder / "items.jsonl"
    data = bytearray(items.read_bytes())
    at = data.index(b'"outcome": "') + len(b'"outcome": "')
    data[at] ^= 0x01
    items.write_bytes(bytes(data))
    done = verify(folder)
    assert done.returncode == 1 and "ALTERED: file items.jsonl was altered" in done.stdout


def test_an_added_file_and_an_edited_definition_are_named(ws: Workspace, tmp_path: Path) -> None:
    folder = unpack(build_run_bundle(ws, load_actor(ws, "sigrid"), kyc_run(ws))[1], tmp_path / "out")
    (folder / "extra.txt").write_text("slipped in")
    [definition] = folder.glob("definition-v*.yaml")
    definition.write_text(definition.read_text() + "\n# edited\n")
    done = verify(folder)
    assert done.returncode == 1
    assert f"file {definition.name} was altered" in done.stdout and "file extra.txt was added" in done.stdout


def test_a_rehashed_entry_that_no_longer_links_is_named(ws: Workspace, tmp_path: Path) -> None:
    """A forger who edits an entry and recomputes its hash still breaks the link to the entry before it."""
    folder = unpack(build_run_bundle(ws, load_actor(ws, "sigrid"), kyc_run(ws))[1], tmp_path / "out")
    path = folder / "audit_entries.jsonl"
    entries = lines(path)
    i = next(i for i in range(1, len(entries)) if entries[i]["seq"] == entries[i - 1]["seq"] + 1)
    entries[i]["prev_hash"] = "f" * 64
    entries[i]["hash"] = bundle_verify.entry_hash(entries[i])
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    problems = bundle_verify.verify(folder, say=lambda _: None)
    assert problems[0] == (f"audit entry seq {entries[i]['seq']} does not link to entry {entries[i - 1]['seq']}: "
                           "its prev_hash is not that entry's hash")


# --- authorization and audit ------------------------------------------------------------------------------
def test_the_export_is_audited_with_the_zips_sha256(ws: Workspace) -> None:
    run_id = kyc_run(ws)
    _, content = build_run_bundle(ws, load_actor(ws, "sigrid"), run_id)
    [(actor, entity_kind, payload)] = sql(ws, "SELECT actor, entity_kind, payload FROM audit_log WHERE event = "
                                              "'bundle.exported' AND entity_id = :r", r=run_id)
    payload = json.loads(payload)
    assert actor == "member:sigrid" and entity_kind == "bundle"
    assert payload["sha256"] == hashlib.sha256(content).hexdigest() and payload["bytes"] == len(content)
    assert payload["format"] == "zip" and ws.verify_audit().intact


def test_a_viewer_is_refused_and_the_refusal_is_audited(ws: Workspace) -> None:
    run_id = kyc_run(ws)
    with pytest.raises(NotAuthorized, match="auditor or operator"):
        build_run_bundle(ws, load_actor(ws, "viewer"), run_id)
    [(payload,)] = sql(ws, "SELECT payload FROM audit_log WHERE event = 'command.refused' AND actor = "
                           "'member:viewer' AND entity_kind = 'bundle' AND entity_id = :r", r=run_id)
    assert json.loads(payload)["permission"] == "export"
    assert sql(ws, "SELECT count(*) FROM audit_log WHERE event = 'bundle.exported'") == [(0,)]


def test_an_unknown_run_is_a_clear_not_found(ws: Workspace) -> None:
    with pytest.raises(NotFound, match="no run 'RUN-999999'.*RUN-000042"):
        build_run_bundle(ws, load_actor(ws, "sigrid"), "RUN-999999")


# --- the command line -------------------------------------------------------------------------------------
def test_the_cli_writes_the_bundle_and_names_an_unknown_run(demo_quarter_path: str, tmp_path: Path) -> None:
    db = _copy(demo_quarter_path, tmp_path / "ws.duckdb")
    target = tmp_path / "evidence.zip"
    out: list[str] = []
    assert main(["--db", db, "bundle", "RUN-000008", "--out", str(target), "--as", "sigrid"], out=out.append) == 0
    content = target.read_bytes()
    assert zipfile.is_zipfile(target) and str(target) in out[0]
    assert f"{len(content):,} bytes" in out[0] and hashlib.sha256(content).hexdigest() in out[0]
    assert verify(target).returncode == 0

    out.clear()
    code = main(["--db", db, "bundle", "RUN-999999", "--out", str(tmp_path / "x.zip"), "--as", "sigrid"],
                out=out.append)
    assert code != 0 and out[0].startswith("error: There is no run 'RUN-999999'")
    assert not (tmp_path / "x.zip").exists()

    out.clear()
    assert main(["--db", db, "bundle", "RUN-000008", "--as", "viewer"], out=out.append) != 0
    assert out[0].startswith("refused:")


# --- the Run page -----------------------------------------------------------------------------------------
def _bundle_button(at: Any) -> Any:
    [button] = [b for b in at.get("download_button") if "evidence bundle" in b.proto.label]
    return button


def test_the_run_page_offers_the_bundle_and_disables_it_for_a_viewer(app_workspace: str) -> None:
    at = open_app("sigrid", page=PAGES["run"][0], params={"id": "RUN-000008"})
    assert not at.exception
    button = _bundle_button(at)
    assert not button.proto.disabled
    at = open_app("viewer", page=PAGES["run"][0], params={"id": "RUN-000008"})
    button = _bundle_button(at)
    assert button.proto.disabled and "auditor or operator role" in button.proto.help
