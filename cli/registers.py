"""``registers list``, ``registers show ID`` and ``registers import ID FILE``: the organization's subjects.

``import`` is a state-changing command (``engine.commands.named``): performed here when no engine holds the
workspace, forwarded to the running engine's intake endpoint when one does. ``list`` and ``show`` read.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from engine.commands.named import BadRequest, params_from_args, perform
from engine.registers import definitions_using
from store.views.registers import (
    read_imports_of,
    read_register_summaries,
    read_register_versions_of,
    read_subjects_page,
)

EXIT_OK = 0
Out = Callable[[str], None]


def add_parsers(sub: Any) -> None:
    """The ``registers`` command group, under the CLI's subcommands."""
    rg = sub.add_parser("registers", help="the organization's registers: list, show one, import a file")
    rg_sub = rg.add_subparsers(dest="registers_command", required=True)
    rg_sub.add_parser("list", help="each register: fields, subjects, last import, automations using it")
    show = rg_sub.add_parser("show", help="one register: its fields, events, source, versions and imports")
    show.add_argument("register")
    show.add_argument("--subjects", type=int, default=10, metavar="N", help="how many subjects to list (10)")
    imp = rg_sub.add_parser("import", help="load a CSV, Parquet, XLSX or JSON lines file into a register")
    imp.add_argument("register")
    imp.add_argument("file")
    imp.add_argument("--as", dest="member", required=True, help="the member importing (an operator or admin)")
    imp.add_argument("--format", choices=("csv", "parquet", "xlsx", "jsonl"),
                     help="the file's format when its extension does not say it")
    imp.add_argument("--mode", choices=("upsert", "replace"), default="upsert",
                     help="upsert (default): add and update; replace: also withdraw keys missing from the file")
    imp.add_argument("--skip-bad-rows", action="store_true",
                     help="load the good rows and list the refused ones (default: refuse the whole file)")
    imp.add_argument("--ignore-extra-columns", action="store_true",
                     help="accept columns the register does not declare, and ignore them")


def run(engine: Any, args: argparse.Namespace, out: Out) -> int:
    report = engine.load_registers(actor="engine:cli")  # the folder as it is now, as the engine takes it
    for err in report.errors:
        out(f"register rejected: {err}")
    if args.registers_command == "import":
        engine.load_definitions(actor="engine:cli")  # the automations its events may start
        for line in perform(engine, "import", params_from_args(args)).lines:
            out(line)
        return EXIT_OK
    engine.load_definitions(actor="engine:cli")
    if args.registers_command == "list":
        return _list(engine, out)
    return _show(engine, args.register, args.subjects, out)


def _when(row: dict[str, Any] | None) -> str:
    if row is None:
        return "never imported"
    return (f"{row['imported_at']:%Y-%m-%d %H:%M} UTC by {row['actor']} from {row['source']} "
            f"({row['import_id']})")


def _list(engine: Any, out: Out) -> int:
    with engine.ws.read() as conn:
        summaries = read_register_summaries(conn)
    if not summaries:
        out(f"no registers declared yet: put a YAML file in {engine.registers_dir} (see README, "
            "'Start a real workspace')")
        return EXIT_OK
    for s in summaries:
        using = definitions_using(engine.catalog, s["id"])
        withdrawn = f" (+{s['withdrawn']:,} withdrawn)" if s["withdrawn"] else ""
        out(f"{s['id']:24} v{s['version']:<3} {s['fields']:>2} fields  {s['subjects']:>10,} subjects{withdrawn}")
        out(f"{'':24} last import: {_when(s['last_import'])}")
        out(f"{'':24} used by: {', '.join(using) or 'no automation'}")
    return EXIT_OK


def _show(engine: Any, register_id: str, n_subjects: int, out: Out) -> int:
    with engine.ws.read() as conn:
        summaries = {s["id"]: s for s in read_register_summaries(conn)}
        if register_id not in summaries:
            raise BadRequest(f"there is no register {register_id!r}; registers: "
                             f"{', '.join(summaries) or 'none declared'}")
        s = summaries[register_id]
        reg = s["register"]
        versions = read_register_versions_of(conn, register_id)
        imports = read_imports_of(conn, register_id, limit=10)
        subjects = read_subjects_page(conn, reg, limit=max(0, n_subjects))
    spec = reg.spec
    out(f"{spec.id}: {spec.title} (version {reg.version}; key {spec.key}; shown as {spec.label})")
    if spec.description:
        out(f"  {spec.description.strip()}")
    out("fields:")
    for name, ftype in spec.fields.items():
        marks = [m for m, on in (("key", name == spec.key), ("required", name in spec.required)) if on]
        out(f"  {name:24} {ftype:10} {', '.join(marks)}")
    out("events: " + (", ".join(f"{n} ({e.describe()})" for n, e in spec.events.items()) or "none declared"))
    out("source: " + (spec.source.described if spec.source else "imported by members (no scheduled source)"))
    out(f"used by: {', '.join(definitions_using(engine.catalog, spec.id)) or 'no automation'}")
    out(f"subjects: {s['subjects']:,}" + (f" (+{s['withdrawn']:,} withdrawn)" if s["withdrawn"] else ""))
    out("versions:")
    for v in versions:
        out(f"  v{v['version']}  {v['created_at']:%Y-%m-%d %H:%M} UTC by {v['authored_by']}  "
            f"sha256 {v['content_hash'][:16]}…")
    out("imports:" if imports else "imports: none yet")
    for i in imports:
        out(f"  {i['import_id']}  {i['imported_at']:%Y-%m-%d %H:%M} UTC by {i['actor']}  {i['origin']} "
            f"{i['source']}  {i['mode']}: {i['added']:,} added, {i['changed']:,} changed, "
            f"{i['unchanged']:,} unchanged, {i['withdrawn']:,} withdrawn, {i['refused']:,} refused, "
            f"{i['events']:,} events" + (f"  sha256 {i['sha256']}" if i["sha256"] else ""))
    if subjects:
        out(f"first {len(subjects)} subjects by {spec.key}:")
        for row in subjects:
            gone = f"  (withdrawn {row['withdrawn_at']:%Y-%m-%d})" if row["withdrawn_at"] else ""
            out(f"  {row[spec.key]}  {row.get(spec.label) or ''}{gone}")
    return EXIT_OK
