"""Settings from the environment: a mistyped one stops with a sentence naming it, what it must be and how to
fall back, wherever it is read — never ``could not convert string to float``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.action_calls import action_timeout_seconds
from engine.authz import _sign_in_limits
from engine.intake.client import answer_timeout_seconds
from engine.resume import resume_every_seconds
from engine.settings import number_from_env

READERS: dict[str, tuple[Callable[[], object], str]] = {
    "RUNLEDGER_ACTION_TIMEOUT_SECONDS": (action_timeout_seconds, "a number of seconds"),
    "RUNLEDGER_RESUME_SECONDS": (resume_every_seconds, "a number of seconds"),
    "RUNLEDGER_INTAKE_TIMEOUT": (answer_timeout_seconds, "a number of seconds"),
    "RUNLEDGER_SIGNIN_MAX_FAILURES": (_sign_in_limits, "a whole number of failures"),
    "RUNLEDGER_SIGNIN_LOCK_MINUTES": (_sign_in_limits, "a number of minutes"),
}
DEFAULTS = {"RUNLEDGER_ACTION_TIMEOUT_SECONDS": "30 seconds", "RUNLEDGER_RESUME_SECONDS": "30 seconds",
            "RUNLEDGER_INTAKE_TIMEOUT": "600 seconds", "RUNLEDGER_SIGNIN_MAX_FAILURES": "5 failures",
            "RUNLEDGER_SIGNIN_LOCK_MINUTES": "15 minutes"}


@pytest.mark.parametrize("name", list(READERS))
@pytest.mark.parametrize("raw", ["soon", "nan", "1e999", "3,5"])
def test_a_setting_that_is_not_a_number_is_refused_by_name(monkeypatch, name: str, raw: str) -> None:
    read, kind = READERS[name]
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError) as raised:
        read()
    assert str(raised.value) == f"{name} must be {kind}, not {raw!r}; unset it to use the default ({DEFAULTS[name]})"


@pytest.mark.parametrize("name", list(READERS))
@pytest.mark.parametrize("raw", ["0", "-2"])
def test_a_setting_that_is_not_above_zero_is_refused_by_name(monkeypatch, name: str, raw: str) -> None:
    read, _ = READERS[name]
    monkeypatch.setenv(name, raw)
    with pytest.raises(ValueError) as raised:
        read()
    assert str(raised.value) == (f"{name} must be more than 0 (got {raw!r}); unset it to use the default "
                                 f"({DEFAULTS[name]})")


def test_a_count_must_be_whole_and_a_latency_may_be_zero(monkeypatch) -> None:
    monkeypatch.setenv("RUNLEDGER_SIGNIN_MAX_FAILURES", "2.5")
    with pytest.raises(ValueError, match=r"must be a whole number of failures, not '2.5'"):
        _sign_in_limits()
    monkeypatch.setenv("RUNLEDGER_SIGNIN_MAX_FAILURES", " 3 ")
    assert _sign_in_limits()[0] == 3
    monkeypatch.setenv("RUNLEDGER_MESSAGING_LATENCY_SECONDS", "0")
    assert number_from_env("RUNLEDGER_MESSAGING_LATENCY_SECONDS", 0, "seconds", allow_zero=True) == 0
    monkeypatch.setenv("RUNLEDGER_MESSAGING_LATENCY_SECONDS", "-1")
    with pytest.raises(ValueError, match=r"^RUNLEDGER_MESSAGING_LATENCY_SECONDS must be 0 or more \(got '-1'\)"):
        number_from_env("RUNLEDGER_MESSAGING_LATENCY_SECONDS", 0, "seconds", allow_zero=True)


@pytest.mark.parametrize("name", list(READERS))
def test_unset_or_empty_means_the_default(monkeypatch, name: str) -> None:
    read, _ = READERS[name]
    monkeypatch.delenv(name, raising=False)
    unset = read()
    monkeypatch.setenv(name, "")
    assert read() == unset
