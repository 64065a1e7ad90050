"""Integrations as an organization declares them: the remote systems its actions reach (a ticket tracker's
webhook, a mail server), one YAML file each.

A declaration says where the system is and how to reach it, never with what secret: a signing key, a
token or a password is named by the environment variable that holds it (``secret_env``,
``password_env``, ``${TOKEN}`` in a header), so neither the YAML nor the workspace ever holds one.

Pure: no network, no environment. ``engine.integrations`` reads the secrets and talks to the systems;
definitions validate ``actioner: webhook:ID`` / ``email:ID`` and their params against these declarations.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.actions import ActionerSpec
from core.alerts import AlertPolicy, AlertPolicyError, parse_alert_policy
from core.declared import EMAIL, DeclarationError, read_yaml_mapping, text_value

KINDS = ("webhook", "smtp")
ACTIONER_PREFIX = {"webhook": "webhook", "smtp": "email"}  # kind → how an action names it: webhook:ID, email:ID
ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # "Bearer ${TICKETING_TOKEN}" in a header value
# Where a system is may differ per environment (a test gateway, staging, production): ``url``, ``host`` and
# ``port`` may say "${VARIABLE}" or "${VARIABLE:-default}", taken from the environment the engine runs in.
LOCATION_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
HEADER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# Headers Runledger sets itself: a declaration may not override what makes a request idempotent or signed.
OWN_HEADERS = frozenset({"idempotency-key", "x-runledger-signature", "x-runledger-timestamp", "content-type",
                         "content-length", "host"})
# Words that say a literal secret was written into the YAML: refused with the way to do it instead.
SECRET_WORDS = ("password", "secret", "token", "api_key", "apikey")
EMAIL_PARAMS = {"to": str, "subject": str, "body": str}
COMMON_KEYS = {"id", "kind", "title", "description", "timeout_seconds", "concurrency", "alerts"}
WEBHOOK_KEYS = COMMON_KEYS | {"url", "secret_env", "headers", "record_id", "ca_file_env"}
SMTP_KEYS = COMMON_KEYS | {"host", "port", "starttls", "tls", "username_env", "password_env", "from"}
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_CONCURRENCY = 8


class IntegrationError(DeclarationError):
    """One problem in one integration file, said so that its author can fix it."""


@dataclass(frozen=True)
class IntegrationSpec:
    """One declared remote system. ``webhook``: ``url``, ``secret_env`` (signs every request),
    ``headers`` (``${VAR}`` taken from the environment), ``record_id`` (a dotted path to the remote
    record's id in the JSON answer), ``ca_file_env`` (a CA bundle to trust, for an internal PKI).
    ``smtp``: ``host``, ``port``, ``starttls``/``tls``, ``username_env``/``password_env``, ``sender``."""

    id: str
    kind: str
    title: str = ""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    concurrency: int = DEFAULT_CONCURRENCY
    url: str = ""
    secret_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    record_id: str | None = None
    ca_file_env: str | None = None
    host: str = ""
    port: int = 25
    starttls: bool = False
    tls: bool = False
    username_env: str | None = None
    password_env: str | None = None
    sender: str = ""
    alerts: AlertPolicy | None = None  # the workspace's default alerts, for automations that declare none
    content: str = field(default="", repr=False, compare=False)

    @property
    def actioner(self) -> str:
        """How a definition's action names this integration: ``webhook:ticketing``, ``email:mail``."""
        return f"{ACTIONER_PREFIX[self.kind]}:{self.id}"

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()

    def env_names(self) -> tuple[str, ...]:
        """Every environment variable this integration reads its secrets from."""
        names = [n for n in (self.secret_env, self.username_env, self.password_env, self.ca_file_env) if n]
        for value in self.headers.values():
            names.extend(ENV_REF.findall(value))
        return tuple(dict.fromkeys(names))

    def described(self) -> str:
        if self.kind == "webhook":
            return f"webhook POST {self.url}" + (" (signed)" if self.secret_env else "")
        security = "TLS" if self.tls else "STARTTLS" if self.starttls else "plain"
        return f"SMTP {self.host}:{self.port} ({security}) from {self.sender}"


def actioner_spec(spec: IntegrationSpec) -> ActionerSpec:
    """What a definition's action on this integration accepts. A webhook's params are its JSON body, any
    keys; an email takes exactly ``to``, ``subject`` and ``body``. Neither writes a record of a register of
    the workspace: the remote system holds it, and the item's reference names it."""
    if spec.kind == "webhook":
        return ActionerSpec(spec.actioner, None, {}, {}, open_params=True)
    return ActionerSpec(spec.actioner, None, dict(EMAIL_PARAMS), {})


def _fail(path: str) -> Any:
    def fail(fld: str, expected: str, found: Any, fix: str = "") -> IntegrationError:
        return IntegrationError(path, fld, expected, found, fix)
    return fail


def _locate(doc: dict[str, Any], env: Mapping[str, str], fail: Any) -> dict[str, Any]:
    """``doc`` with ``${VARIABLE}`` / ``${VARIABLE:-default}`` in ``url``, ``host`` and ``port`` taken from
    ``env``; a variable that is not set and has no default is the file's error."""
    out = dict(doc)
    for key in ("url", "host", "port"):
        value = doc.get(key)
        if not isinstance(value, str) or "${" not in value:
            continue

        def resolve(m: re.Match[str], key: str = key) -> str:
            name, default = m.group(1), m.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is None:
                raise fail(key, f"the variable {name} set, or a default written ${{{name}:-value}}",
                           f"${{{name}}} with {name} not set", f"set {name}, or give a default")
            return default

        located = LOCATION_REF.sub(resolve, value)
        out[key] = int(located) if key == "port" and located.isdigit() else located
    return out


def parse_integration(text: str, path: str, env: Mapping[str, str] | None = None) -> IntegrationSpec:
    """An integration from its YAML text, its location variables taken from ``env`` (none given: each
    location's default). Raises ``IntegrationError`` naming the file, the field, what was expected and
    the fix."""
    fail = _fail(path)
    doc = read_yaml_mapping(text, path, IntegrationError,
                            "write the integration as one YAML mapping with id, kind and its settings")
    doc = _locate(doc, env or {}, fail)
    kind = doc.get("kind")
    if kind not in KINDS:
        raise fail("kind", f"one of {', '.join(KINDS)}", kind if "kind" in doc else "nothing",
                   "say which kind of system this is")
    allowed = WEBHOOK_KEYS if kind == "webhook" else SMTP_KEYS
    for k in doc:
        if k not in allowed:
            if isinstance(k, str) and any(w in k.lower() for w in SECRET_WORDS):
                raise fail(str(k), "no secret in the YAML", "a literal secret",
                           f"remove it; put the value in an environment variable and name it with "
                           f"{'secret_env' if kind == 'webhook' else 'password_env'}")
            raise fail(str(k), f"one of {', '.join(sorted(allowed))}", k, "remove it or correct its spelling")

    def text_of(key: str, required: bool = True) -> str:
        return text_value(doc, key, fail, required)

    def env_of(key: str) -> str | None:
        value = doc.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not ENV_NAME.match(value):
            raise fail(key, "the name of an environment variable, like TICKETING_HMAC", value,
                       "the secret itself never goes in the YAML: put it in that variable (or the secrets "
                       "file RUNLEDGER_SECRETS_FILE names)")
        return value

    integration_id = text_of("id")
    if not ID.match(integration_id):
        raise fail("id", "lowercase letters, digits and hyphens, starting with a letter", integration_id,
                   "rename it, e.g. ticketing")
    timeout = doc.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 600:
        raise fail("timeout_seconds", "a number of seconds above 0 and at most 600", timeout)
    concurrency = doc.get("concurrency", DEFAULT_CONCURRENCY)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
        raise fail("concurrency", "a whole number from 1 to 256 (requests at once per run)", concurrency)
    alerts = None
    if doc.get("alerts") is not None:
        try:
            alerts = parse_alert_policy(doc["alerts"], {integration_id: kind}, via_default=integration_id)
        except AlertPolicyError as exc:
            raise fail(exc.field, exc.expected, exc.found, exc.fix) from None
    common = dict(id=integration_id, kind=kind, title=text_of("title", required=False) or integration_id,
                  timeout_seconds=float(timeout), concurrency=concurrency, alerts=alerts, content=text)
    if kind == "webhook":
        return IntegrationSpec(**common, **_webhook(doc, text_of, env_of, fail))
    return IntegrationSpec(**common, **_smtp(doc, text_of, env_of, fail))


def _webhook(doc: dict[str, Any], text_of: Any, env_of: Any, fail: Any) -> dict[str, Any]:
    url = text_of("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail("url", "an http:// or https:// address", url, "give the full address the requests go to")
    if parts.username or parts.password:
        raise fail("url", "an address without credentials", "an address with a user or password in it",
                   "put credentials in a header with ${VARIABLE}, never in the YAML")
    headers_raw = doc.get("headers") or {}
    if not isinstance(headers_raw, dict):
        raise fail("headers", "a mapping of header names to values", type(headers_raw).__name__)
    headers: dict[str, str] = {}
    for name, value in headers_raw.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise fail(f"headers.{name}", "a header name (letters, digits, hyphens)", name)
        if name.lower() in OWN_HEADERS:
            raise fail(f"headers.{name}", "a header Runledger does not set itself", name,
                       "remove it: Runledger sets the idempotency key, signature, timestamp and content type")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise fail(f"headers.{name}", "one line of text", value)
        literal = ENV_REF.sub("", value).lower()
        if name.lower() in ("authorization", "x-api-key", "api-key") and len(literal.replace("bearer", "")
                                                                                 .replace("basic", "").strip()) > 0:
            raise fail(f"headers.{name}", "a value whose secret part is ${VARIABLE}", "a literal credential",
                       f'write it as "Bearer ${{{name.upper().replace("-", "_")}_TOKEN}}" and set that '
                       "environment variable")
        for ref in ENV_REF.findall(value):
            if not ENV_NAME.match(ref):
                raise fail(f"headers.{name}", "${VARIABLE} in upper case", ref)
        headers[name] = value
    record_id = doc.get("record_id")
    if record_id is not None and (not isinstance(record_id, str)
                                  or not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", record_id)):
        raise fail("record_id", "a dotted path into the JSON answer, like id or data.issue.key", record_id)
    return dict(url=url, secret_env=env_of("secret_env"), headers=headers, record_id=record_id,
                ca_file_env=env_of("ca_file_env"))


def _smtp(doc: dict[str, Any], text_of: Any, env_of: Any, fail: Any) -> dict[str, Any]:
    host = text_of("host")
    port = doc.get("port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise fail("port", "a port number (25, 465 or 587 usually)", port)
    flags = {}
    for key in ("starttls", "tls"):
        value = doc.get(key, False)
        if not isinstance(value, bool):
            raise fail(key, "true or false", value)
        flags[key] = value
    if flags["starttls"] and flags["tls"]:
        raise fail("tls", "one of tls (port 465) or starttls (port 587), not both", True, "keep one")
    sender = text_of("from")
    if not EMAIL.match(sender):
        raise fail("from", "an e-mail address", sender)
    username_env, password_env = env_of("username_env"), env_of("password_env")
    if (username_env is None) != (password_env is None):
        raise fail("password_env" if password_env is None else "username_env",
                   "both username_env and password_env, or neither", "only one of them",
                   "name the variables holding the user name and the password")
    return dict(host=host, port=port, starttls=flags["starttls"], tls=flags["tls"], username_env=username_env,
                password_env=password_env, sender=sender)


@dataclass
class IntegrationsReport:
    integrations: list[tuple[str, IntegrationSpec]] = field(default_factory=list)
    errors: list[IntegrationError] = field(default_factory=list)

    def by_actioner(self) -> dict[str, IntegrationSpec]:
        return {spec.actioner: spec for _, spec in self.integrations}


def load_integration_files(directory: str | Path, env: Mapping[str, str] | None = None) -> IntegrationsReport:
    """Every ``*.yaml``/``*.yml`` file of ``directory`` (none if it does not exist), located by ``env``; a
    file that does not parse, or that repeats another's id, is an error of its own and the others still
    load."""
    report = IntegrationsReport()
    folder = Path(directory)
    if not folder.is_dir():
        return report
    seen: dict[str, str] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            spec = parse_integration(path.read_text(encoding="utf-8"), str(path), env)
        except IntegrationError as exc:
            report.errors.append(exc)
            continue
        except UnicodeDecodeError:
            report.errors.append(IntegrationError(str(path), "(whole file)", "UTF-8 text", "undecodable bytes"))
            continue
        if spec.id in seen:
            report.errors.append(IntegrationError(str(path), "id", "an id no other integration file has",
                                                  spec.id, f"{seen[spec.id]} declares it already; rename one"))
            continue
        seen[spec.id] = str(path)
        report.integrations.append((str(path), spec))
    return report


def describe_evidence(evidence: Mapping[str, Any] | None) -> str:
    """What a remote system answered an attempt, in one line for a table: "201 Created · id TCK-1 · body
    sha256 3f2a…" for a webhook; "accepted for a@b.example · <key@runledger>" for an e-mail."""
    if not evidence:
        return ""
    if evidence.get("kind") == "smtp":
        parts = []
        if evidence.get("accepted"):
            parts.append("accepted for " + ", ".join(evidence["accepted"]))
        for addr, reply in (evidence.get("refused") or {}).items():
            parts.append(f"{addr}: {reply}")
        if evidence.get("reply"):
            parts.append(str(evidence["reply"]))
        parts.append(str(evidence.get("message_id", "")))
        return " · ".join(p for p in parts if p)
    if "status" not in evidence:
        return "no answer"
    parts = [f"{evidence['status']} {evidence.get('reason') or ''}".strip()]
    if evidence.get("remote_id"):
        parts.append(f"id {evidence['remote_id']}")
    if evidence.get("body_sha256"):
        parts.append(f"body sha256 {str(evidence['body_sha256'])[:12]}…")
    return " · ".join(parts)
