"""Load: the engine executes a 100,000-item run inside the app's server while 20 browser sessions browse it.

Run by hand (not part of pytest)::

    .venv/bin/python bench/bench_load.py                      # solo, 20 protocol sessions, 18 + 2 browsers, solo
    .venv/bin/python bench/bench_load.py --browsers 20        # solo, 20 chromium sessions, solo
    .venv/bin/python bench/bench_load.py --server-env STREAMLIT_RUNNER_POST_SCRIPT_GC=false   # an experiment

Targets (issue 5): p95 interaction ≤ 2 s, no errors, and the engine keeps ≥ 50% of its solo throughput.

DuckDB admits one process per workspace file, so the run executes where it does in production: in the
engine inside ``streamlit run app.py`` (``ui/runtime.py``), fired with ``python -m engine fire`` — which the
CLI forwards over the intake endpoint to that engine and which returns when the run has ended (or at once,
when the scheduler's event poll took the trigger event first: then a scout watches the Runs page). Every round
starts a fresh server on a fresh copy of one workspace (the demo quarter to browse, plus 100,000 accounts
the benchmark's definition matches):

- **solo**: one session loads the app (the engine starts with the app's first session), signs in and
  leaves; then the run is fired with no browser open.
- **loaded**: ``--sessions`` sessions (``bench/load_sessions.py``, in a process of its own) sign in and
  browse; after ``--warmup`` seconds of that the run is fired, and they go on until it has ended. K of them
  (``--browsers``, one loaded round per value) are chromium contexts (what a member sees, drawing
  included); the rest speak Streamlit's websocket protocol (what the server delivers, at almost no CPU of
  their own — on a two-core machine twenty chromium pages would otherwise take the cores from the server
  they are measuring, where twenty members would each bring their own computer).

Solo rounds come first and last (and between repeats), so a shared machine's drift shows.

Throughput is the run's items over (completed_at − triggered_at), read with SQL from the workspace after the
server has stopped — the engine's own clock at both ends, matching and execution, as ``bench_executor``
counts its total; a loaded round stops its sessions after ``--load-seconds`` and then counts what the run
settled while they browsed. CPU is read from ``/proc`` over that span, per process tree (the
server; the load generator with its chromium), and for the whole machine, which is shared: what neither
tree used was someone else's work. Interaction latencies are the sessions' own (see
``load_sessions.py``); the table shows those that overlapped the run, and then the whole round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import load_report as rep  # noqa: E402
from bench.load_workspace import DEFINITION_ID, build_base, copy_workspace, read_run_timing  # noqa: E402
from tests.browser.support import AppServer  # noqa: E402

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # Debian's chromium; never a download


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the load generator exited {proc.returncode} first")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def _start_client(url: str, control: Path, sessions: int, browsers: int, a: argparse.Namespace,
                  log: Path) -> subprocess.Popen[bytes]:
    nice = a.client_nice
    control.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "load_sessions.py"), "--url", url, "--control", str(control),
         "--sessions", str(sessions), "--browsers", str(browsers), "--think", str(a.think),
         "--timeout", str(a.timeout), "--scout"],
        cwd=ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.nice(nice)) if nice else None)


def _stop_client(client: subprocess.Popen[bytes], control: Path, timeout: float) -> None:
    (control / "stop").write_text("")
    client.wait(timeout)


def _snapshot(server: int, client: int | None) -> dict[str, float]:
    return {"t": time.monotonic(), "server": rep.cpu_seconds(rep.tree_pids(server)),
            "client": rep.cpu_seconds(rep.tree_pids(client)) if client else 0.0,
            "machine": rep.machine_busy_seconds()}


def _start_fire(ws: Path, control: Path) -> subprocess.Popen[str]:
    """``python -m engine fire``, forwarded to the server's engine. The sessions are told it was asked for as
    soon as it is sent (their scout then looks for the run)."""
    proc = subprocess.Popen([sys.executable, "-m", "engine", "--db", str(ws), "fire", DEFINITION_ID, "--as", "sigrid"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RUNLEDGER_INTAKE_TIMEOUT": "36000"})
    (control / "fired").write_text("")
    return proc


def _wait_for_end(fire: subprocess.Popen[str], control: Path, deadline: float | None) -> tuple[str | None, str]:
    """Wait until the run has ended, or ``deadline``: (fire's answer if it came, how the end was seen).

    ``fire`` answers when the run it started has ended — unless the scheduler's event poll dispatched the
    trigger event first (it runs the run itself, and ``fire`` answers at once, "runs started: none"); then the
    scout watches the run on the Runs page until it shows as ended."""
    left = lambda: None if deadline is None else max(0.0, deadline - time.monotonic())  # noqa: E731
    try:
        out, _ = fire.communicate(timeout=left())
    except subprocess.TimeoutExpired:
        return None, "not yet"
    if fire.returncode:
        raise RuntimeError(f"fire exited {fire.returncode}: {out}")
    if re.search(r"RUN-\d+", out):
        return out, "fire answered when the run ended"
    (control / "watch").write_text("")
    while not (control / "done").exists():
        if deadline is not None and time.monotonic() > deadline:
            return out, "not yet"
        time.sleep(0.2)
    return out, "the scheduler's poll ran it (fire answered at once); the scout saw it end"


def run_round(label: str, base: Path, defs: Path, tmp: Path, sessions: int, browsers: int,
              a: argparse.Namespace) -> dict[str, Any]:
    """One fresh server on a fresh copy; the run fired once, with ``sessions`` browsing (0: solo)."""
    slug = label.replace(" ", "-")
    ws, control, log = tmp / f"{slug}.duckdb", tmp / f"{slug}-control", tmp / f"{slug}-client.log"
    copy_workspace(base, ws)
    server = AppServer(ws, tmp / f"{slug}-streamlit.log",
                       env={"RUNLEDGER_DEFINITIONS": str(defs), **dict(kv.split("=", 1) for kv in a.server_env)})
    clients: list[subprocess.Popen[bytes]] = []
    try:
        # Solo too: the engine starts with the app's first session, so one session opens it and leaves.
        client = _start_client(server.url, control, max(sessions, 1), browsers, a, log)
        clients.append(client)
        _wait_for(control / "ready", client, 120 + 10 * sessions, "sign-in of every session")
        if not sessions:
            _stop_client(client, control, 120)
            control = tmp / f"{slug}-watch"  # a scout alone, in case fire answers before the run ends
            clients.append(client := _start_client(server.url, control, 0, 0, a, log))
            _wait_for(control / "ready", client, 60, "the scout")
        _wait_for(Path(f"{ws}.engine.json"), server.proc, 60, "the engine's intake")  # type: ignore[arg-type]
        if sessions:
            time.sleep(a.warmup)
        watched = client.pid if sessions else None
        before, load_before = _snapshot(server.proc.pid, watched), os.getloadavg()[0]
        fire = _start_fire(ws, control)
        out, ended_by = _wait_for_end(fire, control, time.monotonic() + a.load_seconds if sessions else None)
        load_end = time.time() if sessions else None
        after, load_after = _snapshot(server.proc.pid, watched), os.getloadavg()[0]
        big_run = (control / "big_run").read_text() if (control / "big_run").exists() else None
        _stop_client(client, control, a.timeout + 60)
        if ended_by == "not yet":  # cut short by --load-seconds: the run finishes with no one browsing
            rest = tmp / f"{slug}-rest"
            clients.append(client := _start_client(server.url, rest, 0, 0, a, log))
            _wait_for(rest / "ready", client, 60, "the scout")
            if out is None:  # fire has not answered: it answers when the run has ended (or at once)
                out, _ = _wait_for_end(fire, rest, None)
            else:  # fire answered at once: the scout watches the run to its end
                (rest / "watch").write_text("")
                _wait_for(rest / "done", client, 36000, "the run's end")
            _stop_client(client, rest, 60)
        server_rss = rep.peak_rss_mb(server.proc.pid)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
        server.stop()
    run_id = re.search(r"RUN-\d+", out or "")
    run = run_id.group(0) if run_id else big_run
    if run is None:
        raise RuntimeError(f"no run id: fire answered {out!r} and the scout saw none")
    span = after["t"] - before["t"]
    result = json.loads((tmp / f"{slug}-control" / "result.json").read_text()) if sessions else {"samples": []}
    server_log = (tmp / f"{slug}-streamlit.log").read_text()
    serving, _, stopping = server_log.partition("Stopping...")  # Streamlit's word on SIGTERM
    return {"label": label, "sessions": sessions, "browsers": browsers if sessions else 0, "run_id": run,
            "fire_output": (out or "").strip(), "ended_by": ended_by, "timing": read_run_timing(ws, run, load_end),
            "server_rss_mb": server_rss, "server_cores": (after["server"] - before["server"]) / span,
            "client_cores": (after["client"] - before["client"]) / span,
            "machine_cores": (after["machine"] - before["machine"]) / span,
            "load_before": load_before, "load_after": load_after, "fire_wall_s": span,
            "server_tracebacks": serving.count("Traceback"), "shutdown_tracebacks": stopping.count("Traceback"),
            "server_log": server_log[:20000], **result}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, default=100_000, help="items in the big run")
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--browsers", type=int, nargs="+", default=[0, 2],
                   help="chromium sessions among them: one loaded round per value")
    p.add_argument("--repeat", type=int, default=1, help="how many times the solo + loaded rounds run")
    p.add_argument("--think", type=float, default=2.0, help="mean pause between a session's interactions, s")
    p.add_argument("--timeout", type=float, default=30.0, help="an interaction slower than this is an error")
    p.add_argument("--warmup", type=float, help="seconds of browsing before the run is fired (default: one "
                   "loop of a session, 5 × think + 5, so that every session is browsing by then)")
    p.add_argument("--load-seconds", type=float, default=240.0,
                   help="the sessions stop this long after the fire if the run has not ended; the loaded "
                   "throughput is then what the run settled while they browsed")
    p.add_argument("--client-nice", type=int, default=0, help="niceness of the load generator and chromium")
    p.add_argument("--server-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="experiments only: environment of the app's server, e.g. "
                   "STREAMLIT_RUNNER_POST_SCRIPT_GC=false (printed with the results)")
    p.add_argument("--keep", help="keep workspaces and logs in this folder (default: a temporary one); "
                   "a workspace built there before is reused")
    p.add_argument("--report-from", metavar="ROUNDS_JSON", help="print the report of an earlier run again")
    a = p.parse_args()
    if a.report_from:
        saved = json.loads(Path(a.report_from).read_text())
        print(rep.report(saved["base"], saved["rounds"], argparse.Namespace(**saved["args"]), saved["command"],
                         DEFINITION_ID, saved.get("date")))
        return
    if a.warmup is None:
        a.warmup = 5 * a.think + 5
    cmd = ".venv/bin/python bench/bench_load.py " + " ".join(sys.argv[1:])
    tmp = Path(a.keep or tempfile.mkdtemp(prefix="runledger-load-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        base, defs = tmp / "base.duckdb", tmp / "definitions"
        info = tmp / "base.json"
        if a.keep and info.exists() and base.exists() and json.loads(info.read_text())["subjects"] == a.subjects:
            base_info = json.loads(info.read_text())  # built by an earlier run into the same --keep folder
        else:
            t = time.perf_counter()
            base_info = build_base(base, defs, a.subjects)
            info.write_text(json.dumps(base_info))
            print(f"workspace built in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        plan = [("solo", 0)] + [("loaded", k) for k in a.browsers]
        plan = plan * a.repeat + [("solo", 0)]
        rounds: list[dict[str, Any]] = []
        started = rep.today()
        for i, (kind, browsers) in enumerate(plan, 1):
            label = f"{i}. solo" if kind == "solo" else f"{i}. loaded"
            for old in tmp.glob(f"{label.replace(' ', '-')}*"):  # a --keep folder from an earlier run
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            rounds.append(run_round(label, base, defs, tmp, 0 if kind == "solo" else a.sessions, browsers, a))
            print(f"{label}: {rounds[-1]['timing']['items_per_s']:,.0f} items/s", file=sys.stderr)
            (tmp / "rounds.json").write_text(json.dumps(
                {"command": cmd, "date": started, "args": vars(a), "base": base_info, "rounds": rounds},
                default=str))
        print(rep.report(base_info, rounds, a, cmd, DEFINITION_ID, started))
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
