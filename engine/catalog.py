"""The definitions the engine knows: loaded from files into versions, and read back at the version a
run pinned (parsed from the stored text, so a run always executes exactly what it recorded)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from core.definitions import Definition, LoadReport, content_hash, load_definition_files, parse_definition
from engine.vocabulary import workspace_vocabulary
from store.definitions import (
    read_definition_version,
    read_definitions,
    record_definition_rejection,
    save_definition_version,
)
from store.workspace import Workspace


class UnknownDefinition(LookupError):
    pass


class DefinitionCatalog:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._parsed: dict[tuple[str, int], Definition] = {}
        self._lock = threading.Lock()

    def load_directory(self, directory: str | Path, actor: str) -> LoadReport:
        """Version every valid file whose content changed; record each rejected file once."""
        report = load_definition_files(directory, workspace_vocabulary(self.ws))
        with self.ws.transaction() as tx:
            for path, d in report.definitions:
                save_definition_version(tx, definition_id=d.id, title=d.title, trigger_kind=d.trigger.kind,
                                        enabled=d.enabled, content=d.content, content_hash=d.content_hash,
                                        source_path=path, actor=actor)
            for err in report.errors:
                text = Path(err.path).read_bytes().decode("utf-8", "replace") if Path(err.path).exists() else ""
                record_definition_rejection(tx, err.path, content_hash(text), [str(err)], actor)
        return report

    def get(self, definition_id: str, version: int) -> Definition:
        key = (definition_id, version)
        with self._lock:
            if key in self._parsed:
                return self._parsed[key]
        with self.ws.read() as conn:
            stored = read_definition_version(conn, definition_id, version)
        if stored is None:
            raise UnknownDefinition(f"no automation {definition_id!r} at version {version}")
        d = parse_definition(stored.content, f"{definition_id}@v{version}", workspace_vocabulary(self.ws))
        with self._lock:
            self._parsed[key] = d
        return d

    def rows(self) -> list[dict[str, Any]]:
        with self.ws.read() as conn:
            return read_definitions(conn)

    def latest(self, definition_id: str) -> tuple[Definition, int, bool]:
        """(definition, version, enabled) of the version in effect now."""
        for row in self.rows():
            if row["definition_id"] == definition_id:
                return self.get(definition_id, row["latest_version"]), row["latest_version"], row["enabled"]
        known = ", ".join(r["definition_id"] for r in self.rows()) or "none loaded"
        raise UnknownDefinition(f"no automation {definition_id!r} (known: {known})")

    def in_effect(self) -> list[tuple[Definition, int]]:
        return [(self.get(r["definition_id"], r["latest_version"]), r["latest_version"])
                for r in self.rows() if r["enabled"]]

    def listeners(self, event: dict[str, Any],
                  in_effect: list[tuple[Definition, int]] | None = None) -> list[tuple[Definition, int]]:
        """The enabled definitions this trigger event fires (among ``in_effect``, when the caller read them
        once for many events)."""
        out = []
        for d, v in self.in_effect() if in_effect is None else in_effect:
            t = d.trigger
            if event["kind"] in ("schedule", "manual"):
                hit = event["definition_id"] == d.id
            elif event["kind"] == "event":
                hit = t.kind == "event" and t.event == event["event_type"]
            else:
                hit = t.kind == "signal" and t.source == event["source"]
            if hit:
                out.append((d, v))
        return out
