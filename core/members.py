"""The rules a member's name, roles, e-mail and password must meet, each refusal a sentence saying what was
wrong and what to do. Pure: the engine's member commands, the CLI and the Members page all check here, so
the three can never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from core.roles import ROLES

# A bank's password standard (and NIST SP 800-63B) asks for length rather than composition rules.
MIN_PASSWORD_LENGTH = 12
# argon2 would hash a megabyte happily; a limit keeps a sign-in form from being a way to burn CPU.
MAX_PASSWORD_LENGTH = 1024

_MEMBER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class MemberRuleBroken(ValueError):
    """A name, role, e-mail or password that the workspace does not accept; the message says why."""


def check_member_id(member_id: str) -> str:
    """The member name as stored (sign-in matches it exactly, so it has one spelling: lower case)."""
    if not _MEMBER_ID.match(member_id):
        raise MemberRuleBroken(
            f"{member_id!r} is not a usable member name: use 1–63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (for example j.smith).")
    return member_id


def parse_roles(roles: str | Iterable[str]) -> list[str]:
    """``"operator,approver"`` or a list → sorted, distinct roles; at least one, each a known one."""
    names = roles.split(",") if isinstance(roles, str) else list(roles)
    chosen = sorted({r.strip() for r in names if r.strip()})
    if not chosen:
        raise MemberRuleBroken(f"Give a member at least one role: {', '.join(ROLES)}.")
    unknown = [r for r in chosen if r not in ROLES]
    if unknown:
        raise MemberRuleBroken(f"No such role: {', '.join(unknown)}. The roles are: {', '.join(ROLES)}.")
    return chosen


def normalize_email(email: str) -> str:
    """Stored and compared in lower case: identity providers differ in how they spell an address."""
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 254:
        raise MemberRuleBroken(f"{email!r} is not an e-mail address (like j.smith@bank.example).")
    return email


def password_problem(password: str, member_id: str) -> str | None:
    """Why this password may not be used, or None. The sentence never repeats the password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return (f"The password is {len(password)} characters long; a password needs at least "
                f"{MIN_PASSWORD_LENGTH}. A few unrelated words make a long one that is easy to type.")
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"The password is longer than {MAX_PASSWORD_LENGTH} characters; choose a shorter one."
    if password.strip() != password:
        return "The password begins or ends with a space, which is easy to lose when typing; remove it."
    return None


def check_password(password: str, member_id: str) -> str:
    problem = password_problem(password, member_id)
    if problem:
        raise MemberRuleBroken(problem)
    return password
