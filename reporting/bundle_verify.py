"""Verify a Runledger run evidence bundle offline: python verify_bundle.py [bundle.zip | folder]

Standard library only, so an auditor can run it anywhere without installing Runledger. It checks
1. every audit entry's hash, recomputed exactly as the workspace computed it when the entry was written;
2. the chain links: where two bundled entries have consecutive seq numbers, the later one's prev_hash
   is the earlier one's hash;
3. the definition file against the content hash recorded in run.json;
4. every file against manifest.json (SHA-256, size, record count), and that no file was added or removed.
It prints what it checked; it exits 0 when everything holds, 1 when something was altered (naming the
first altered audit entry by its seq, or the file), 2 when the bundle cannot be read at all.

What it cannot prove alone: someone who rewrites entries AND recomputes every hash AND the manifest makes
a bundle that passes here. Anchor it to the workspace: the zip's SHA-256 is in the workspace's audit log
(entry ``bundle.exported``), and the entry hashes here must equal the workspace's own entries of the same
seq (``python -m engine verify-audit`` proves the workspace's whole chain).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST = "manifest.json"
AUDIT_FILE = "audit_entries.jsonl"
EXIT_OK, EXIT_ALTERED, EXIT_UNREADABLE = 0, 1, 2


class Unreadable(Exception):
    """The bundle cannot be opened or has no manifest: nothing could be checked."""


# --- the audit hash, as the workspace computes it (store/audit.py: format_ts, entry_hash) --------------
def format_ts(text: str) -> str:
    """The timestamp as hashed: UTC, microseconds, a literal Z. A time without offset is taken as UTC."""
    t = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    t = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    # The same spelling as store.audit.format_ts, written the same way so the two are seen to agree.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - mirrors store.audit.format_ts
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond)


def entry_hash(e: dict[str, Any]) -> str:
    material = "\x1f".join([str(e["seq"]), format_ts(e["occurred_at"]), e["actor"], e["event"],
                            e["entity_kind"], e["entity_id"], e["payload"], e["prev_hash"]])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# --- reading a zip or a folder ------------------------------------------------------------------------
class Bundle:
    """The bundle's files by name (relative to the folder that holds manifest.json), zipped or not."""

    def __init__(self, path: Path) -> None:
        self.where = str(path)
        self.outside: list[str] = []
        if not path.exists():
            raise Unreadable(f"{path} does not exist: give the bundle's zip or the folder it was extracted to")
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise Unreadable(f"{path} is neither a zip file nor a folder")
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
            manifests = [n for n in self._zip.namelist() if PurePosixPath(n).name == MANIFEST]
            if len(manifests) != 1:
                raise Unreadable(f"{path} holds {len(manifests)} manifest.json files; a bundle holds one")
            prefix = manifests[0][: -len(MANIFEST)]
            self.names = sorted(n[len(prefix):] for n in self._zip.namelist()
                                if n.startswith(prefix) and not n.endswith("/"))
            self._prefix = prefix
            self.outside = sorted(n for n in self._zip.namelist() if not n.startswith(prefix))
        else:
            self._zip = None
            root = path
            if not (root / MANIFEST).is_file():
                found = sorted(p.parent for p in path.glob(f"*/{MANIFEST}"))
                if len(found) != 1:
                    raise Unreadable(f"no {MANIFEST} in {path} (nor in exactly one folder inside it): "
                                     "point this script at the bundle's zip or at its folder")
                root = found[0]
            self._root = root
            self.where = str(root)
            self.names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                                if p.is_file() and "__pycache__" not in p.parts)

    def open(self, name: str) -> Any:
        if self._zip is not None:
            return self._zip.open(self._prefix + name)
        return (self._root / name).open("rb")

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()

    def sha256(self, name: str) -> tuple[str, int]:
        h, size = hashlib.sha256(), 0
        with self.open(name) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
        return h.hexdigest(), size


def _records(data: bytes) -> list[str]:
    """JSON Lines records. Only "\\n" separates records: JSON escapes it inside strings, while other
    line breaks (U+2028, form feed) may stand unescaped inside a payload. A byte that breaks the UTF-8
    decodes as U+FFFD, so the entry it sits in is still read, and fails its hash."""
    return [line for line in data.decode("utf-8", errors="replace").split("\n") if line.strip()]


# --- the checks ---------------------------------------------------------------------------------------
def check_audit_entries(bundle: Bundle, say: Callable[[str], None]) -> list[str]:
    if AUDIT_FILE not in bundle.names:
        return [f"file {AUDIT_FILE} is missing"]
    problems: list[str] = []
    previous: dict[str, Any] | None = None
    records = _records(bundle.read(AUDIT_FILE))
    links = 0
    for number, line in enumerate(records, start=1):
        try:
            e = json.loads(line)
            seq = int(e["seq"])
            altered = entry_hash(e) != e["hash"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            hint = line.split('"seq":', 1)[1].split(",", 1)[0].strip() if '"seq":' in line else "?"
            problems.append(f"audit entry seq {hint} (line {number} of {AUDIT_FILE}) was altered: "
                            f"it no longer reads as an entry ({type(exc).__name__}: {exc})")
            previous = None
            continue
        if altered:
            problems.append(f"audit entry seq {seq} was altered: its content no longer matches its hash")
        if previous is not None:
            if seq <= previous["seq"]:
                problems.append(f"audit entry seq {seq} is out of order (it follows seq {previous['seq']})")
            elif seq == previous["seq"] + 1:
                links += 1
                if e["prev_hash"] != previous["hash"]:
                    problems.append(f"audit entry seq {seq} does not link to entry {previous['seq']}: its "
                                    "prev_hash is not that entry's hash")
        previous = {"seq": seq, "hash": e["hash"]}
    say(f"audit entries: {len(records)} hashes recomputed, {links} links between consecutive entries "
        "checked" + ("" if problems else " - all hold"))
    return problems


def check_definition(bundle: Bundle, say: Callable[[str], None]) -> list[str]:
    if "run.json" not in bundle.names:
        return ["file run.json is missing"]
    try:
        definition = json.loads(bundle.read("run.json")).get("definition") or {}
    except (ValueError, AttributeError) as exc:
        return [f"file run.json was altered: it no longer reads as JSON ({exc})"]
    name, expected = definition.get("file"), definition.get("content_hash")
    if not name or not expected:
        say("definition: run.json names no definition file (the version was not found when bundling)")
        return []
    if name not in bundle.names:
        return [f"file {name} is missing"]
    actual = hashlib.sha256(bundle.read(name)).hexdigest()
    if actual != expected:
        return [f"file {name} was altered: its SHA-256 {actual} is not the definition's content hash "
                f"{expected} recorded in run.json"]
    say(f"definition: {name} matches its content hash {expected}")
    return []


def _count(bundle: Bundle, name: str) -> int:
    """Records in a JSON Lines file, or elements of a JSON array."""
    data = bundle.read(name)
    if name.endswith(".jsonl"):
        return len(_records(data))
    try:
        value = json.loads(data)
    except ValueError:
        return -1
    return len(value) if isinstance(value, list) else -1


def check_manifest(bundle: Bundle, manifest: dict[str, Any], say: Callable[[str], None]) -> list[str]:
    problems: list[str] = []
    listed: dict[str, dict[str, Any]] = manifest.get("files", {})
    for name, want in listed.items():
        if name not in bundle.names:
            problems.append(f"file {name} is missing (the manifest lists it)")
            continue
        digest, size = bundle.sha256(name)
        if digest != want.get("sha256") or size != want.get("bytes"):
            problems.append(f"file {name} was altered: its SHA-256 is {digest}, the manifest says "
                            f"{want.get('sha256')}")
        elif "records" in want and _count(bundle, name) != want["records"]:
            problems.append(f"file {name} holds {_count(bundle, name)} records, the manifest says "
                            f"{want['records']}")
    for name in bundle.names:
        if name != MANIFEST and name not in listed:
            problems.append(f"file {name} was added: the manifest does not list it")
    problems += [f"file {name} was added outside the bundle's folder" for name in bundle.outside]
    say(f"manifest: {len(listed)} files checked against their SHA-256" + ("" if problems else " - all match"))
    return problems


def verify(path: Path, say: Callable[[str], None] = print) -> list[str]:
    """Every problem found, first altered audit entry first; an empty list means the bundle holds."""
    bundle = Bundle(path)
    try:
        manifest = json.loads(bundle.read(MANIFEST))
    except (ValueError, KeyError, OSError) as exc:
        raise Unreadable(f"{MANIFEST} cannot be read: {exc}") from exc
    say(f"bundle: {bundle.where} (run {manifest.get('run_id', '?')})")
    return (check_audit_entries(bundle, say) + check_definition(bundle, say)
            + check_manifest(bundle, manifest, say))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parent
    try:
        problems = verify(path)
    except (Unreadable, OSError, zipfile.BadZipFile) as exc:
        print(f"CANNOT VERIFY: {exc}")
        return EXIT_UNREADABLE
    if not problems:
        print("OK: the bundle is intact: every audit entry matches its hash and every file its manifest entry.")
        return EXIT_OK
    print(f"ALTERED: {problems[0]}")
    for p in problems[1:]:
        print(f"  also: {p}")
    return EXIT_ALTERED


if __name__ == "__main__":
    sys.exit(main())
