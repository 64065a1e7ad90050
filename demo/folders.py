"""Where the demo keeps the files it makes for a workspace: the registers' CSV exports it imports, and the
outages its messaging gateway had (``demo.gateway``), which ``make run`` replays beside the app.

One function, used by the seed and the gateway alike, so both find the same folder. A DuckDB workspace's
is beside its file (``data/workspace.duckdb`` → ``data/workspace-demo-data``). A PostgreSQL workspace has no
file to stand beside: its folder is under ``data/`` (where the default workspace lives, relative to the
working directory as ``data/workspace.duckdb`` is), named from the server and the database — never from the
whole URL, which may hold a password, and whose ``://`` and ``@`` would otherwise become folders of their own
in the working directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

DATA = Path("data")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def demo_data_folder(workspace: str | Path) -> Path:
    """The demo's folder for the workspace at ``workspace`` (a DuckDB file's path, or a database URL)."""
    text = str(workspace)
    if "://" not in text or text.startswith("duckdb:"):
        path = Path(text.removeprefix("duckdb:///")).resolve()
        return path.parent / f"{path.stem}-demo-data"
    url = sa.make_url(text)
    parts = [url.get_backend_name(), url.host or "local", str(url.port) if url.port else "", url.database or ""]
    name = "-".join(_UNSAFE.sub("_", p) for p in parts if p)
    return (DATA / f"{name}-demo-data").resolve()
