"""What ``bench_load.py`` measures besides the run itself — CPU per process tree, peak RSS, the machine — and
the markdown it prints. Read from ``/proc`` (Linux), so the figures are the kernel's, not the processes' own.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load_flow import BIG

TICK = os.sysconf("SC_CLK_TCK")
KINDS = ("first load", "sign in", "runs", "next page", "open run", "open item", "back")  # what members click


# --- /proc ---------------------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses


def tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant (chromium's renderers, playwright's driver)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (f := _stat_fields(int(entry.name))):
            parent[int(entry.name)] = int(f[1])
    out, frontier = [root], [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        out += kids
        frontier = kids
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system time of the processes, and of their children already reaped."""
    total = 0
    for pid in pids:
        if f := _stat_fields(pid):
            total += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
    return total / TICK


def machine_busy_seconds() -> float:
    """CPU seconds spent on anything but idle and I/O wait, all cores, since boot (``/proc/stat``)."""
    cols = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(cols[:8]) - cols[3] - cols[4]) / TICK


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (``VmHWM``), read before it stops: its peak, not its last."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> str:
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    import duckdb
    import streamlit
    return (f"{os.cpu_count()} CPU ({cpu}), {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} "
            f"GiB, Python {platform.python_version()}, duckdb {duckdb.__version__}, streamlit {streamlit.__version__}, "
            f"{platform.system()} {platform.release()}, chromium {_chromium_version()}")


def _chromium_version() -> str:
    import subprocess
    try:
        out = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True, timeout=20)
        return out.stdout.split()[1] if out.stdout.split()[1:] else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# --- figures -------------------------------------------------------------------------------------------
def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the samples at or below it."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-int(q * 1000) * len(sorted_values) // 1000))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Row:
    """One line of a latency table: a kind of interaction, its count, percentiles (s) and errors."""

    label: str
    n: int
    p50: float
    p95: float
    worst: float
    errors: int


def summarize(samples: list[dict[str, Any]], window: tuple[float, float] | None, client: str) -> list[Row]:
    """Per kind of interaction (and all together) of one client kind: those overlapping ``window`` (the
    run), or all. The live page's own refreshes are a row apart: no member clicked for them."""
    chosen = [s for s in samples if s["client"] == client
              and (window is None or (s["start"] < window[1] and s["end"] > window[0]))]

    def row(label: str, group: list[dict[str, Any]]) -> Row:
        xs = sorted(s["end"] - s["start"] for s in group)
        return Row(label, len(xs), percentile(xs, .5), percentile(xs, .95), xs[-1] if xs else float("nan"),
                   sum(1 for s in group if s["error"]))

    rows = []
    for kind in KINDS:
        group = [s for s in chosen if s["kind"] == kind]
        if group:
            rows.append(row(kind, group))
        live = [s for s in group if s["target"] == BIG]
        if live and kind in ("open run", "open item", "back"):
            rows.append(row("  … of which on the running 100k run", live))
    rows.append(row("**all interactions**", [s for s in chosen if s["kind"] in KINDS]))
    refreshes = [s for s in chosen if s["kind"] == "live refresh"]
    if refreshes:
        rows.append(row("(the live run page's own 2-s refresh; one a click cut short is not counted)", refreshes))
    return rows


def latency_table(rows: list[Row]) -> str:
    lines = ["| interaction | n | p50 s | p95 s | max s | errors |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.label} | {r.n} | {r.p50:.2f} | {r.p95:.2f} | {r.worst:.2f} | {r.errors} |" for r in rows]
    return "\n".join(lines)


def throughput_table(rounds: list[dict[str, Any]]) -> str:
    lines = ["| round | sessions (browsers) | items settled | match s | execute s | total s | items/s | "
             "batches (median "
             "size) | CPU cores: server | load generator | everything else | server peak RSS MB | load avg "
             "(1 min) before → after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rounds:
        t = r["timing"]
        other = r["machine_cores"] - r["server_cores"] - r["client_cores"]
        lines.append(
            f"| {r['label']} | {r['sessions']} ({r['browsers']}) | "
            f"{t['items_in_window']:,}"
            f"{' (of ' + format(t['items'], ',') + '; sessions stopped)' if t['cut_short'] else ''} | "
            f"{t['match_s']:.2f} | "
            f"{t['execute_s']:.2f} | {t['total_s']:.2f} | **{t['items_per_s']:,.0f}** | {t['batches']} "
            f"({t['median_batch']:,.0f}) | "
            f"{r['server_cores']:.2f} | {r['client_cores']:.2f} | {other:.2f} | {r['server_rss_mb']:.0f} | "
            f"{r['load_before']:.2f} → {r['load_after']:.2f} |")
    return "\n".join(lines)


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def round_report(r: dict[str, Any], solo_ips: float) -> list[str]:
    t = r["timing"]
    ratio = t["items_per_s"] / solo_ips
    errors = [s for s in r["samples"] if s["error"]]
    clean = not errors and not r["page_errors"] and not r["server_tracebacks"] and not r["session_crashes"]
    out = [f"### {r['label']}: {r['sessions']} sessions, {r['browsers']} of them in chromium", "",
           f"{r['run_id']}: {t['items_per_s']:,.0f} items/s = **{ratio:.0%} of solo** ({solo_ips:,.0f} items/s, "
           f"the mean of the solo rounds), in {t['batches']} batches (median {t['median_batch']:,.0f} items); the run "
           f"{t['status']}, {t['outcomes']}, audit chain "
           f"{'intact' if t['audit_intact'] else 'BROKEN'}; its end: {r['ended_by']}; the sessions' scout saw it as "
           f"{r.get('big_run') or 'never'}.", ""]
    if t["cut_short"]:
        out += [f"The run had not ended {t['window_end'] - t['triggered_at']:.0f} s after it was fired "
                f"(--load-seconds): the sessions stopped then, with {t['items_in_window']:,} items settled, and "
                f"it finished {t['completed_at'] - t['window_end']:.0f} s later with no one browsing. Its "
                "throughput under load is what it settled while they browsed.", ""]
    verdicts = []
    for client, words in (("protocol", "protocol sessions (the server's side: to the script run's last "
                                       "element)"), ("browser", "chromium sessions (drawn in the browser)")):
        if not any(s["client"] == client for s in r["samples"]):
            continue
        rows = summarize(r["samples"], (t["triggered_at"], t["window_end"]), client)
        whole = summarize(r["samples"], None, client)
        sign_in = next((w for w in whole if w.label == "sign in"), None)
        everything = next(w for w in whole if w.label == "**all interactions**")
        out += [f"Interactions of the {words} that overlapped the run:", "", latency_table(rows), "",
                f"Whole round ({client}): {everything.n} interactions, p50 {everything.p50:.2f} s, p95 "
                f"{everything.p95:.2f} s, max {everything.worst:.2f} s"
                + (f"; sign-in p50 {sign_in.p50:.2f} s, p95 {sign_in.p95:.2f} s (before the run)" if sign_in else "")
                + ".", ""]
        p95 = next(w for w in rows if w.label == "**all interactions**").p95
        verdicts.append(f"p95 {p95:.2f} s ({client}) ≤ 2 s: {'MET' if p95 <= 2 else 'NOT MET'}")
    out.append(f"Errors: {len(errors)} interaction(s) with an error or timeout, {len(r['page_errors'])} uncaught "
               f"page script error(s), {r['server_tracebacks']} traceback(s) in the server log while serving "
               f"(+{r['shutdown_tracebacks']} after it was told to stop), {len(r['session_crashes'])} session(s) "
               "crashed.")
    out += [f"- session {s['session']} ({s['client']}) {s['kind']} {s['target']}: {s['error'][:240]}"
            for s in errors[:8]]
    out += [f"- page error: {e[:240]}" for e in r["page_errors"][:5]]
    verdicts += [f"no errors: {'MET' if clean else 'NOT MET'}",
                 f"≥ 50% of solo throughput: {'MET' if ratio >= 0.5 else 'NOT MET'} ({ratio:.0%})"]
    return out + ["", f"Verdict: {'; '.join(verdicts)}.", ""]


def report(base_info: dict[str, Any], rounds: list[dict[str, Any]], a: Any, cmd: str, definition_id: str,
           date: str | None = None) -> str:
    solo = [r["timing"]["items_per_s"] for r in rounds if not r["sessions"]]
    solo_ips = sum(solo) / len(solo) if solo else float("nan")
    out = [f"`{cmd}`", "", f"Date: {date or today()}  Machine: {machine()}", "",
           f"Workspace: the demo quarter ({base_info['demo_runs']} runs) + {base_info['subjects']:,} accounts "
           f"matched by `{definition_id}` (a finding each). {a.sessions} sessions; think time {a.think:.1f} s "
           f"(±50%); timeout {a.timeout:.0f} s; warm-up {a.warmup:.0f} s; load generator nice {a.client_nice}; "
           f"server environment {' '.join(a.server_env) or 'as shipped'}. "
           "CPU cores are averages from /proc over the span from the fire to the run's end (or to the "
           "sessions' stop).", "",
           throughput_table(rounds), ""]
    for r in rounds:
        if r["sessions"]:
            out += round_report(r, solo_ips)
    return "\n".join(out)
