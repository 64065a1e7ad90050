"""A real PostgreSQL server for the tests: a throwaway cluster (Debian's ``postgresql`` binaries, ``initdb``
and ``pg_ctl``) in a temporary folder, listening on a free loopback port, stopped and removed at the end.

PostgreSQL refuses to run as root; a test run as root (CI's containers) runs the server as the ``postgres``
user the Debian package creates, in a folder that user owns. No mock: the store's SQL, its locks and its
transactions meet the real server.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.receivers import free_port


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL's server binaries are missing: install Debian's postgresql package "
                           "(bash scripts/install-postgres.sh does, as .ci/run and make test do)")
    return found[-1].parent


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields the SQLAlchemy URL of an empty database ``runledger`` on it."""
    bindir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="runledger-pg-"))
    data, port = root / "data", free_port()
    if os.geteuid() == 0:
        server_user = pwd.getpwnam("postgres")
        os.chown(root, server_user.pw_uid, server_user.pw_gid)
    try:
        subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "runledger", "-A", "trust",
                                        "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, text=True)
        subprocess.run(_as_server_user([
            str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start"]),
            check=True, capture_output=True, text=True)
        deadline = time.monotonic() + 30
        while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "runledger",
                        "runledger"], check=True, capture_output=True, text=True)
        yield f"postgresql+psycopg://runledger@127.0.0.1:{port}/runledger"
    finally:
        subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
