"""The layout's rules, read from the code's own imports (every import statement, at any depth, including
those only made for type checking): a pure core that imports nothing of ours; a store that imports no
engine and no app; an engine and reporting that import no app and no Streamlit; no circle anywhere;
``python -m engine brief`` never loads Streamlit."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "store", "engine", "reporting", "demo", "ui", "pages", "cli")
OURS = (*PACKAGES, "app")


def _modules() -> dict[str, Path]:
    out = {"app": ROOT / "app.py"}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module of ours an import names (``store.runs.read_run`` → ``store.runs``), or None."""
    if name.split(".")[0] not in OURS:
        return None
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """Every module of ours that ``module`` imports, with the line (relative imports resolved)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            names = [f"{base}.{a.name}" for a in node.names] or [base]
        for name in names:
            target = _resolve(name)
            if target and target != module:
                yield target, node.lineno


def _external(module: str) -> Iterator[tuple[str, int]]:
    path = MODULES[module]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((a.name.split(".")[0], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0], node.lineno


# ``python -m engine`` is the process entry: it hands over to the command-line app and is nothing else.
ENTRY_POINTS = {"engine.__main__"}


def _violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for module in MODULES:
        if module.split(".")[0] != layer or module in ENTRY_POINTS:
            continue
        for target, line in imports_of(module):
            if target.split(".")[0] in forbidden:
                out.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}")
        if "streamlit" in forbidden:
            out += [f"{MODULES[module].relative_to(ROOT)}:{line} imports streamlit"
                    for name, line in _external(module) if name == "streamlit"]
    return out


@pytest.mark.parametrize("layer,forbidden", [
    ("core", tuple(p for p in OURS if p != "core") + ("streamlit",)),
    ("store", ("engine", "reporting", "demo", "ui", "pages", "app", "cli", "streamlit")),
    ("engine", ("reporting", "demo", "ui", "pages", "app", "cli", "streamlit")),
    ("reporting", ("demo", "ui", "pages", "app", "cli", "streamlit")),
    ("demo", ("ui", "pages", "app", "cli", "streamlit")),
    ("ui", ("pages", "app", "cli")),
    ("cli", ("ui", "pages", "app", "streamlit")),
])
def test_imports_run_one_way(layer: str, forbidden: tuple[str, ...]) -> None:
    assert _violations(layer, forbidden) == []


def test_no_circle_of_imports() -> None:
    graph = {m: {t for t, _ in imports_of(m)} for m in MODULES}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert circles == []


def test_the_checks_see_a_wrong_import(tmp_path: Path) -> None:
    """The reader is real: a file that imports the engine from the store is caught."""
    bad = ROOT / "store" / "_layout_probe.py"
    bad.write_text("from engine.runtime import Engine  # a probe\n")
    try:
        MODULES["store._layout_probe"] = bad
        assert _violations("store", ("engine",)) == ["store/_layout_probe.py:1 imports engine.runtime"]
    finally:
        MODULES.pop("store._layout_probe")
        bad.unlink()


def test_the_brief_command_does_not_load_streamlit() -> None:
    probe = ("import sys, runpy\n"
             "sys.argv = ['engine', '--help']\n"
             "import cli.main, reporting.brief, reporting.exports\n"
             "print('streamlit' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_no_invariant_is_an_assert() -> None:
    """``python -O`` removes ``assert``: what the product relies on is checked with a raise that names it."""
    found = [f"{name}:{node.lineno}" for name, path in MODULES.items()
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Assert)]
    assert found == []
