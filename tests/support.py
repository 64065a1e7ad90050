"""What tests share besides fixtures: a small workspace on a simulated clock, test definitions, scripted
actioners, and readers of what a run left. Imported one way only: ``from tests.support import …``.

``build_engine`` makes a real ``Engine`` over a temp DuckDB file: demo members and intake source seeded,
a few accounts in the register, the test's definitions written to a temp folder and loaded. The clock is
``engine.clock`` (a ``SimulatedClock``), so retries and backoff are driven by the test, not by sleeping.

The actioners below wrap the real findings actioner and script its behaviour per subject: fail
deterministically, fail transiently N times, block on an ``Event`` (to hold items in flight), or act
and lose the answer (to prove a retry replays instead of acting twice).
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import json
import shutil
import tempfile
import textwrap
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import sqlalchemy as sa

from core.definitions import Vocabulary
from core.roles import Actor
from demo.seed import seed_members_and_sources
from engine.actioners.base import ActionContext, ActionRequest, CreatedRecord, DeterministicFailure, TransientFailure
from engine.actioners.modules import FindingsActioner, default_actioners
from engine.authz import hash_password, load_actor
from engine.clock import SimulatedClock
from engine.executor import params_hash
from engine.registers import load_register_folder, parse_register_files
from engine.runtime import Engine
from engine.vocabulary import declared_vocabulary
from store import items as item_store
from store import runs as run_store
from store.records import insert_idempotency, insert_records
from store.schema import audit_log
from store.subjects import insert_subjects
from store.workspace import Workspace

UTC = dt.UTC
START = dt.datetime(2026, 7, 6, 6, 0, tzinfo=UTC)  # a Monday, 06:00 UTC
DEMO_REGISTERS = Path(__file__).resolve().parent.parent / "registers"  # the demo organization's registers


# --- definitions ----------------------------------------------------------------------------------
def finding_definition(def_id: str, *, approval: bool = False, retry: str = "max_attempts: 1",
                       severity: str = "medium") -> str:
    """A schedule definition over active accounts whose one action creates a finding."""
    return textwrap.dedent(f"""\
        id: {def_id}
        title: Test {def_id}
        trigger: {{kind: schedule, cron: "0 6 * * mon"}}
        condition:
          subject: accounts
          where:
            - {{field: status, op: eq, value: active, reason: the account is no longer active}}
        actions:
          - actioner: findings.create
            params:
              title: "Finding for {{{{ subject.name }}}}"
              severity: {severity}
              owner: "{{{{ subject.manager }}}}"
        policies:
          approval: {{required: {str(approval).lower()}}}
          retry: {{{retry}}}
        """)


def account_rows(n: int) -> list[dict[str, Any]]:
    return [{"account_id": f"ACC-{i:03d}", "name": f"Member {i}", "manager": "m.one", "status": "active",
             "kyc_review_due": dt.date(2026, 7, 1), "risk_rating": "low"} for i in range(1, n + 1)]


# --- scripted actioners ---------------------------------------------------------------------------
class WrappedActioner:
    """Delegates to a real actioner (findings by default) and remembers every call it received."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner or FindingsActioner()
        self.spec = self.inner.spec
        self.calls: list[ActionRequest] = []
        self._lock = threading.Lock()

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        with self._lock:
            self.calls.append(req)
        self.before(req, ctx)
        return self.inner.execute(req, ctx)

    def before(self, req: ActionRequest, ctx: ActionContext) -> None:
        """Hook for subclasses: raise to fail, block to hold the item in flight."""

    def subjects_called(self) -> list[str]:
        return [r.subject_id for r in self.calls]


class FailsDeterministically(WrappedActioner):
    """The owning module refuses these subjects every time."""

    def __init__(self, subjects: Iterable[str], inner: Any = None) -> None:
        super().__init__(inner)
        self.subjects = set(subjects)

    def before(self, req: ActionRequest, ctx: ActionContext) -> None:
        if req.subject_id in self.subjects:
            raise DeterministicFailure(f"findings register refuses {req.subject_id}: owner unknown")


class FailsTransiently(WrappedActioner):
    """Times out the first N calls for each scripted subject, then works."""

    def __init__(self, times: Mapping[str, int], inner: Any = None) -> None:
        super().__init__(inner)
        self.left = dict(times)

    def before(self, req: ActionRequest, ctx: ActionContext) -> None:
        with self._lock:
            n = self.left.get(req.subject_id, 0)
            if n > 0:
                self.left[req.subject_id] = n - 1
        if n > 0:
            raise TransientFailure("findings register timed out")


class BlocksOnEvent(WrappedActioner):
    """Holds every call until the test sets ``gate``; ``entered`` tells the test a call is in progress."""

    def __init__(self, inner: Any = None) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def before(self, req: ActionRequest, ctx: ActionContext) -> None:
        self.entered.set()
        if not self.gate.wait(20):
            raise AssertionError("the test never released the gate")


class LosesResponse(WrappedActioner):
    """Acts for real — the owning module commits the record and its idempotency entry in its own
    transaction — and then the answer is lost on the way back (a transient failure).

    The module's workspace is the engine's: ``build_engine`` hands it over once it exists.
    """

    def __init__(self, subjects: Iterable[str], inner: Any = None,
                 ledger_params: Mapping[str, Any] | None = None) -> None:
        super().__init__(inner)
        self.ws: Workspace | None = None
        self.subjects, self.ledger_params = set(subjects), ledger_params
        self.committed: dict[str, str] = {}  # subject → record_ref that really landed

    def execute(self, req: ActionRequest, ctx: ActionContext) -> CreatedRecord:
        created = super().execute(req, ctx)
        if req.subject_id not in self.subjects or req.subject_id in self.committed:
            return created
        # ``ledger_params`` lets a test make the module remember different parameters for the key.
        ph = params_hash(dict(req.params) | dict(self.ledger_params or {}))
        assert self.ws is not None
        with self.ws.transaction() as tx:
            insert_records(tx, created.module, [created.row])
            insert_idempotency(tx, [dict(idempotency_key=req.idempotency_key, actioner=self.spec.name,
                                         params_hash=ph, outcome="succeeded", record_ref=created.ref,
                                         item_id=req.item_id, created_at=tx.now())])
        self.committed[req.subject_id] = created.ref
        raise TransientFailure("connection reset while reading the findings register's answer")


# --- the engine -----------------------------------------------------------------------------------
@functools.cache
def quick_password_hash(password: str) -> str:
    """A real argon2 hash, computed once per password per session: seeding members is then ~0.1 s, not
    ~0.6 s, per test. Each hash stays valid (argon2 carries its own salt), only reused across workspaces."""
    return hash_password(password)


_TEMPLATE: list[Path] = []  # this process's template workspace, made once (see _template_workspace)


def _template_workspace() -> Path:
    """A workspace as every test's starts: the schema, the demo members and intake source, the demo
    organization's registers — made once per test process and copied for each test (a copy costs
    milliseconds; making it, with the schema's migrations and seven registers, half a second)."""
    if _TEMPLATE and _TEMPLATE[0].exists():
        return _TEMPLATE[0]
    folder = Path(tempfile.mkdtemp(prefix="runledger-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "ws.duckdb"
    make_template(str(path))
    _TEMPLATE[:] = [path]
    return path


def make_template(db: str) -> None:
    """Fill the empty workspace at ``db`` (a DuckDB file or a PostgreSQL URL) as every test's starts: the
    schema, the demo members and intake source, the demo organization's registers. The PostgreSQL template
    database of ``tests/backends.py`` is made by this too, so both backends' tests start alike."""
    clock = SimulatedClock(START - dt.timedelta(hours=1))
    ws = Workspace(db, now=clock.now)
    try:
        with mock.patch("demo.seed.hash_password", quick_password_hash):
            seed_members_and_sources(ws)
        report = load_register_folder(ws, DEMO_REGISTERS, "member:admin")
        assert not report.errors, report.errors
    finally:
        ws.close()


def build_engine(tmp_path: Path, definitions: Mapping[str, str] | None = None, *, accounts: int = 5,
                 actioners: Mapping[str, Any] | None = None, author: str = "member:admin",
                 allow_rejected: bool = False, fresh: bool = False, db: str | None = None,
                 seeded: bool = False, **engine_kw: Any) -> Engine:
    """A real engine over a fresh temp workspace; ``engine.clock`` is a SimulatedClock at ``START``. The
    workspace is a copy of this process's template (``_template_workspace``) unless ``fresh``: a test of
    the file's own layout (a truncated file, say) wants it made from nothing. ``db``: the workspace's file
    or URL instead (an empty PostgreSQL database, say: ``tests/backends.py``), made from nothing — or,
    ``seeded``, a copy of a template ``make_template`` made (a PostgreSQL template database's copy)."""
    defs = tmp_path / "definitions"
    defs.mkdir(exist_ok=True)
    for def_id, text in (definitions if definitions is not None else {"d": finding_definition("d")}).items():
        (defs / f"{def_id}.yaml").write_text(text)
    clock = SimulatedClock(START - dt.timedelta(hours=1))
    if db and seeded:  # a copy of a template database: already holds what make_template writes
        ws = Workspace(db, now=clock.now)
    elif fresh or db:  # made here, block by block, as a new workspace is (not a copy of the template's file)
        ws = Workspace(db or str(tmp_path / "ws.duckdb"), now=clock.now)
        with mock.patch("demo.seed.hash_password", quick_password_hash):
            seed_members_and_sources(ws)
    else:
        template = _template_workspace()
        shutil.copyfile(template, tmp_path / "ws.duckdb")
        if Path(f"{template}.wal").exists():  # closed workspaces are checkpointed; this is for safety's sake
            shutil.copyfile(f"{template}.wal", tmp_path / "ws.duckdb.wal")
        ws = Workspace(str(tmp_path / "ws.duckdb"), now=clock.now)
    chosen = default_actioners()
    chosen.update(actioners or {})
    engine_kw.setdefault("registers_dir", DEMO_REGISTERS)
    engine = Engine(ws, clock, defs, actioners=chosen, **engine_kw)
    registered = engine.load_registers(actor=author)
    assert not registered.errors, registered.errors
    with ws.transaction() as tx:
        insert_subjects(tx, "accounts", account_rows(accounts))
    for a in chosen.values():
        if isinstance(a, LosesResponse):
            a.ws = ws
    report = engine.load_definitions(actor=author)
    assert allow_rejected or not report.errors, report.errors
    clock.advance_to(START)
    return engine


def demo_workspace(path: Path | str, **ws_kw: Any) -> Workspace:
    """A fresh workspace with the demo organization's registers declared and nothing else in it."""
    ws = Workspace(str(path), **ws_kw)
    report = load_register_folder(ws, DEMO_REGISTERS, "member:admin")
    assert not report.errors, report.errors
    return ws


# --- reading back ---------------------------------------------------------------------------------
def fire_one(engine: Engine, definition_id: str = "d") -> str:
    """Fire a schedule definition now and return the one run it made."""
    [run_id] = engine.fire(definition_id)
    return run_id


def run_of(engine: Engine, run_id: str) -> dict[str, Any]:
    with engine.ws.read() as conn:
        run = run_store.read_run(conn, run_id)
    assert run is not None
    return run


def items_of(engine: Engine, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's items by subject id."""
    with engine.ws.read() as conn:
        return {i["subject_id"]: i for i in item_store.read_items(conn, run_id)}


def item_of(engine: Engine, item_id: str) -> dict[str, Any]:
    with engine.ws.read() as conn:
        item = item_store.read_item(conn, item_id)
    assert item is not None
    return item


def attempts_of(engine: Engine, item_id: str) -> list[dict[str, Any]]:
    with engine.ws.read() as conn:
        return item_store.read_attempts(conn, item_id)


def audit_of(engine: Engine, event: str | None = None, entity_id: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(audit_log).order_by(audit_log.c.seq)
    if event:
        q = q.where(audit_log.c.event == event)
    if entity_id:
        q = q.where(audit_log.c.entity_id == entity_id)
    with engine.ws.read() as conn:
        return [dict(r) | {"payload": json.loads(r["payload"])} for r in conn.execute(q).mappings()]


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.ws.read() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def values(engine: Engine, sql: str, **params: Any) -> list[Any]:
    """The first column of every row the query returns, in its order (portable SQL: both backends run it)."""
    with engine.ws.read() as conn:
        return list(conn.execute(sa.text(sql), params).scalars())


def actor(engine: Engine, member_id: str) -> Actor:
    return load_actor(engine.ws, member_id)


DEMO_TODAY = dt.datetime(2026, 12, 3, 12, 0, tzinfo=UTC)  # a Thursday of Q4 2026, as `make run` seeds it


def demo_vocabulary() -> Vocabulary:
    """What the demo organization's definitions may name: its declared registers and Runledger's records."""
    return declared_vocabulary([spec for _, spec in parse_register_files(DEMO_REGISTERS)[0]])
