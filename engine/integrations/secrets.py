"""Where an integration's secrets come from: the environment, or a secrets file that an environment variable
names (``RUNLEDGER_SECRETS_FILE``: TOML with top-level ``NAME = "value"`` keys, readable by the engine's user
only). Never the YAML and never the workspace: a declaration names the variable, and only this module reads
its value, at the moment a request needs it (so a rotated secret is used at the next request)."""

from __future__ import annotations

import os
import stat
import threading
import tomllib
from pathlib import Path

SECRETS_FILE_ENV = "RUNLEDGER_SECRETS_FILE"


class MissingSecret(LookupError):
    """A declared secret has no value: the integration cannot be used until it is set."""


_lock = threading.Lock()
_cache: dict[str, tuple[float, dict[str, str]]] = {}  # path → (mtime, its values)


def _file_values() -> dict[str, str]:
    name = os.environ.get(SECRETS_FILE_ENV)
    if not name:
        return {}
    path = Path(name)
    try:
        st = path.stat()
    except OSError as exc:
        raise MissingSecret(f"{SECRETS_FILE_ENV} names {path}, which cannot be read ({exc.strerror}); "
                            "create it or unset the variable") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MissingSecret(f"{path} ({SECRETS_FILE_ENV}) can be read by other users; make it readable by the "
                            f"engine's user only (chmod 600 {path})")
    with _lock:
        cached = _cache.get(str(path))
        if cached is not None and cached[0] == st.st_mtime:
            return cached[1]
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise MissingSecret(f"{path} ({SECRETS_FILE_ENV}) is not valid TOML ({exc}); write one "
                                'NAME = "value" line per secret') from None
        values = {k: v for k, v in raw.items() if isinstance(v, str)}
        _cache[str(path)] = (st.st_mtime, values)
        return values


def read_secret(name: str, integration: str) -> str:
    """The value of the secret ``name`` for ``integration``: the environment first, then the secrets file."""
    value = os.environ.get(name)
    if value:
        return value
    value = _file_values().get(name)
    if value:
        return value
    raise MissingSecret(f"integration {integration} needs the secret {name}, which is not set: set the "
                        f"environment variable {name} (or add it to the file {SECRETS_FILE_ENV} names) "
                        "where the engine runs, then retry")


def missing_secrets(names: tuple[str, ...], integration: str) -> list[str]:
    """The sentences for every one of ``names`` that has no value now (none when all are set)."""
    out = []
    for name in names:
        try:
            read_secret(name, integration)
        except MissingSecret as exc:
            out.append(str(exc))
    return out
