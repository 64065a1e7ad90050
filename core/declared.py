"""What every declaration file (a definition, a register, an integration) shares: one problem said so its
author can fix it — the file, the field, what was expected, what was found, and the fix — and reading its
YAML into a mapping with the same kind of sentence when it is not one."""

from __future__ import annotations

import re
from typing import Any

import yaml

EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")  # an e-mail address as declarations and actions give it


# libyaml's loader reads the same documents as the pure-Python one about ten times faster; every declaration
# (and every stored version read back) goes through here, so reading a folder of them stays cheap.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``text`` parsed as one safe YAML document (raises ``yaml.YAMLError`` with its marks)."""
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, chosen above
    except yaml.YAMLError:
        # The pure-Python parser says what it found where ("expected ',' or ']', but got ':'"), libyaml only
        # what it missed: a broken file is rare, so parse it again for the clearer sentence.
        return yaml.safe_load(text)


class DeclarationError(ValueError):
    """One problem in one declaration file."""

    def __init__(self, path: str, field: str, expected: str, found: Any, fix: str = "") -> None:
        self.path, self.field, self.expected, self.found = path, field, expected, found
        shown = repr(found) if not isinstance(found, str) or len(found) < 80 else repr(found[:77] + "...")
        super().__init__(f"{path}: field '{field}': expected {expected}; found {shown}."
                         + (f" Fix: {fix}" if fix else ""))


def read_yaml_mapping(text: str, path: str, error: type[DeclarationError], what: str) -> dict[Any, Any]:
    """The file's YAML as a mapping, or ``error`` naming the syntax error's place (``what``: how the file
    should be written, for the fix)."""
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise error(path, "(whole file)", "valid YAML", f"a syntax error at {where}",
                    f"correct the YAML at {where}") from None
    if not isinstance(doc, dict):
        raise error(path, "(whole file)", "a mapping of keys to values",
                    type(doc).__name__ if doc is not None else "nothing", what)
    return doc


def text_value(doc: dict[Any, Any], key: str, fail: Any, required: bool = True) -> str:
    """``doc[key]`` as non-empty text ("" when it may be left out and is); ``fail(field, expected, found,
    fix)`` makes the file's error otherwise."""
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise fail(key, "a non-empty text value", value if key in doc else "nothing (the field is missing)",
                   f"add '{key}:' with a value")
    return value.strip()
