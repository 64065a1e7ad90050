"""A real PostgreSQL server for the tests: a throwaway cluster (Debian's ``postgresql`` binaries, ``initdb``
and ``pg_ctl``) in a temporary folder, listening on a free loopback port, stopped and removed at the end.

PostgreSQL refuses to run as root; a test run as root (CI's containers) runs the server as the ``postgres``
user the Debian package creates, in a folder that user owns. No mock: the store's SQL, its locks and its
transactions meet the real server.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
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


_PREPARED: dict[Callable[[str], None], Path] = {}  # this process's stopped clusters, by what prepared them


def _initdb(bindir: Path, data: Path) -> None:
    subprocess.run(_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "runledger", "-A", "trust",
                                    "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, text=True)


def _start(bindir: Path, root: Path, data: Path, port: int) -> None:
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


def _stop(bindir: Path, data: Path, mode: str) -> None:
    subprocess.run(_as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", mode, "stop"]),
                   capture_output=True)


def _server_root() -> Path:
    """A folder of the server user's own: its data directory and its socket go in it."""
    root = Path(tempfile.mkdtemp(prefix="runledger-pg-"))
    if os.geteuid() == 0:
        server_user = pwd.getpwnam("postgres")
        os.chown(root, server_user.pw_uid, server_user.pw_gid)
    return root


def _url(port: int) -> str:
    return f"postgresql+psycopg://runledger@127.0.0.1:{port}/runledger"


def _prepared_cluster(bindir: Path, prepare: Callable[[str], None]) -> Path:
    """The data directory of a cluster made once per process: ``initdb``, the ``runledger`` database, then
    whatever ``prepare`` makes beside it (given that database's URL) — stopped cleanly, so that a copy of
    its files starts as a server of its own."""
    if prepare in _PREPARED:
        return _PREPARED[prepare]
    root = _server_root()
    atexit.register(shutil.rmtree, root, True)
    data, port = root / "data", free_port()
    _initdb(bindir, data)
    _start(bindir, root, data, port)
    try:
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "runledger",
                        "runledger"], check=True, capture_output=True, text=True)
        prepare(_url(port))
    finally:
        _stop(bindir, data, "fast")  # a clean shutdown: its files are then a consistent copy
    _PREPARED[prepare] = data
    return data


@contextlib.contextmanager
def postgres_server(prepare: Callable[[str], None] | None = None) -> Iterator[str]:
    """A running server; yields the SQLAlchemy URL of an empty database ``runledger`` on it.

    ``prepare``: what the server holds besides, made by calling it with that URL (it creates other databases,
    leaving ``runledger`` empty). It is called once per process: the cluster it prepared is stopped and kept,
    and every server asked for with the same ``prepare`` starts on a copy of its files — a copy and a start
    take a fraction of ``initdb`` and ``prepare`` (tests/backends.py's template workspace: seconds per module)."""
    bindir = _bin_dir()
    root = _server_root()
    data, port = root / "data", free_port()
    try:
        if prepare is None:
            _initdb(bindir, data)
        else:
            subprocess.run(_as_server_user(["cp", "-a", str(_prepared_cluster(bindir, prepare)), str(data)]),
                           check=True, capture_output=True, text=True)
        _start(bindir, root, data, port)
        if prepare is None:
            subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "runledger",
                            "runledger"], check=True, capture_output=True, text=True)
        yield _url(port)
    finally:
        _stop(bindir, data, "immediate")
        shutil.rmtree(root, ignore_errors=True)
