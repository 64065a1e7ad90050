"""A PostgreSQL server for the benchmarks that outlives one script: building the 1,000,000-run workspace on it
takes minutes, and the dashboard and analytics benchmarks then run against it as often as needed.

    .venv/bin/python bench/pg_bench_server.py start --dir /tmp/pgbench/pg [--port 55432]   # prints the URL
    .venv/bin/python bench/pg_bench_server.py url --dir /tmp/pgbench/pg
    .venv/bin/python bench/pg_bench_server.py stop --dir /tmp/pgbench/pg [--remove]

Debian's PostgreSQL binaries (as ``tests/pg_server.py``), run as the ``postgres`` user when we are root
(PostgreSQL refuses root), the cluster in ``DIR/data``, its log in ``DIR/server.log``, listening on loopback
only, trust authentication for the ``runledger`` superuser. ``start`` on a folder that already holds a cluster
starts that cluster again, so a workspace built once is reused. The settings are a benchmark server's, written
into ``postgresql.conf`` (so they hold across restarts): memory sized for a 1,000,000-run workspace on a
machine with ~20 GB, and durability off (``fsync``, ``full_page_writes``) because nothing here is kept —
the store's reads, which is what the benchmarks time, do not depend on it.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.receivers import free_port  # noqa: E402

DATABASE = "runledger"
USER = "runledger"

# A benchmark server's settings: what a 1 M-run workspace's reads are measured under (written into
# postgresql.conf by ``start``, and quoted in bench/RESULTS.md). Everything not named is PostgreSQL's default,
# JIT and parallel query included, as a server a DBA set up would have them.
SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "'2GB'",
    "effective_cache_size": "'8GB'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'1GB'",
    "max_wal_size": "'8GB'",
    "checkpoint_timeout": "'30min'",
    "wal_level": "minimal",  # with the next: a COPY into a table truncated in its transaction writes no WAL
    "max_wal_senders": "0",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "timezone": "'UTC'",
}


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL's server binaries are missing: bash scripts/install-postgres.sh installs them")
    return found[-1].parent


def _as_server_user(cmd: list[str]) -> list[str]:
    return cmd if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *cmd]


def _port_file(folder: Path) -> Path:
    return folder / "port"


def url_of(folder: Path) -> str:
    port = _port_file(folder).read_text().strip()
    return f"postgresql+psycopg://{USER}@127.0.0.1:{port}/{DATABASE}"


def start(folder: Path, port: int | None) -> str:
    bindir, data = _bin_dir(), folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        server_user = pwd.getpwnam("postgres")
        os.chown(folder, server_user.pw_uid, server_user.pw_gid)
    fresh = not (data / "PG_VERSION").exists()
    if fresh:
        subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", USER, "-A", "trust",
                                        "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, text=True)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\n# bench/pg_bench_server.py\n" + "".join(f"{k} = {v}\n" for k, v in SETTINGS.items()))
    chosen = port or (int(_port_file(folder).read_text()) if _port_file(folder).exists() else free_port())
    _port_file(folder).write_text(str(chosen))
    subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                                    "-w", "-o", f"-p {chosen} -k {folder}", "start"]),
                   check=True, capture_output=True, text=True)
    deadline = time.monotonic() + 60
    while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(chosen)],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"PostgreSQL did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    if fresh:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(chosen), "-U", USER, DATABASE],
                       check=True, capture_output=True, text=True)
    return url_of(folder)


def stop(folder: Path, remove: bool) -> None:
    data = folder / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(_as_server_user([str(_bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       check=True, capture_output=True, text=True)
    if remove:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("start", "stop", "url"))
    p.add_argument("--dir", type=Path, required=True, help="the server's folder (its cluster is DIR/data)")
    p.add_argument("--port", type=int, help="start: the port (default: the folder's last one, else a free one)")
    p.add_argument("--remove", action="store_true", help="stop: also delete the folder and its cluster")
    a = p.parse_args()
    if a.command == "start":
        print(start(a.dir, a.port))
    elif a.command == "stop":
        stop(a.dir, a.remove)
    else:
        print(url_of(a.dir))


if __name__ == "__main__":
    main()
