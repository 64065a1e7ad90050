"""Integrations declared as data: every bad declaration is refused with its file, field and fix (a secret
written into the YAML above all); a definition naming an integration that is not declared, or an e-mail
without its ``to``, is refused at load; each declaration is a version in the workspace, audited; and a
workspace of schema 6 gains what integrations need on open.

What an engine loads into its workspace runs on both backends (tests/backends.py). DuckDB only: the
workspace of schema 6, a file an older Runledger wrote."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from core.integrations import IntegrationError, load_integration_files, parse_integration
from engine.integrations.secrets import MissingSecret, read_secret
from engine.runtime import Engine
from store.migrations import SCHEMA_VERSION
from store.workspace import Workspace
from tests.backends import backend_pg_slow_fixture as backend_fixture  # noqa: F401
from tests.backends import make_engine_fixture, pg_server_fixture, pg_template_fixture  # noqa: F401
from tests.support import audit_of

GOOD = """\
id: ticketing
kind: webhook
url: https://tracker.example/api/issues
secret_env: TICKETING_HMAC
headers: {Authorization: "Bearer ${TICKETING_TOKEN}"}
record_id: id
"""


def error_of(text: str) -> str:
    with pytest.raises(IntegrationError) as caught:
        parse_integration(text, "integrations/x.yaml")
    return str(caught.value)


def test_a_good_declaration_reads_back_with_the_variables_it_needs() -> None:
    spec = parse_integration(GOOD, "integrations/ticketing.yaml")
    assert (spec.actioner, spec.timeout_seconds, spec.concurrency) == ("webhook:ticketing", 10.0, 8)
    assert spec.env_names() == ("TICKETING_HMAC", "TICKETING_TOKEN")
    assert spec.described() == "webhook POST https://tracker.example/api/issues (signed)"


@pytest.mark.parametrize(("text", "message"), [
    ("id: t\nkind: ftp\n", "integrations/x.yaml: field 'kind': expected one of webhook, smtp; found 'ftp'. "
                           "Fix: say which kind of system this is"),
    (GOOD + "password: hunter2\n", "integrations/x.yaml: field 'password': expected no secret in the YAML; found "
                                   "'a literal secret'. Fix: remove it; put the value in an environment variable "
                                   "and name it with secret_env"),
    (GOOD.replace("${TICKETING_TOKEN}", "abc123"), "integrations/x.yaml: field 'headers.Authorization': expected a "
     "value whose secret part is ${VARIABLE}; found 'a literal credential'. Fix: write it as \"Bearer "
     "${AUTHORIZATION_TOKEN}\" and set that environment variable"),
    (GOOD.replace("secret_env: TICKETING_HMAC", "secret_env: s3cr3t-value"), "integrations/x.yaml: field "
     "'secret_env': expected the name of an environment variable, like TICKETING_HMAC; found 's3cr3t-value'. "
     "Fix: the secret itself never goes in the YAML: put it in that variable (or the secrets file "
     "RUNLEDGER_SECRETS_FILE names)"),
    (GOOD.replace("https://tracker.example", "https://bot:pw@tracker.example"), "integrations/x.yaml: field "
     "'url': expected an address without credentials; found 'an address with a user or password in it'. Fix: put "
     "credentials in a header with ${VARIABLE}, never in the YAML"),
    (GOOD.replace("https://", "ftp://"), "integrations/x.yaml: field 'url': expected an http:// or https:// address; "
                                         "found 'ftp://tracker.example/api/issues'. Fix: give the full address the "
                                         "requests go to"),
    (GOOD + "headers: {Idempotency-Key: x}\n", "integrations/x.yaml: field 'headers.Idempotency-Key': expected a "
     "header Runledger does not set itself; found 'Idempotency-Key'. Fix: remove it: Runledger sets the idempotency "
     "key, signature, timestamp and content type"),
    (GOOD + "concurrency: 0\n", "integrations/x.yaml: field 'concurrency': expected a whole number from 1 to 256 "
                                "(requests at once per run); found 0."),
    ("id: mail\nkind: smtp\nhost: smtp.example\nfrom: not-an-address\n", "integrations/x.yaml: field 'from': "
     "expected an e-mail address; found 'not-an-address'."),
    ("id: mail\nkind: smtp\nhost: h\nfrom: a@b.example\nusername_env: SMTP_USER\n", "integrations/x.yaml: field "
     "'password_env': expected both username_env and password_env, or neither; found 'only one of them'. Fix: name "
     "the variables holding the user name and the password"),
    ("[1, 2]\n", "integrations/x.yaml: field '(whole file)': expected a mapping of keys to values; found 'list'. "
                 "Fix: write the integration as one YAML mapping with id, kind and its settings"),
])
def test_a_bad_declaration_names_its_file_field_and_fix(text: str, message: str) -> None:
    assert error_of(text) == message


def test_a_folder_loads_the_good_files_and_reports_each_bad_one(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)  # the same id again
    (tmp_path / "c.yaml").write_text("kind: [\n")
    report = load_integration_files(tmp_path)
    assert [spec.id for _, spec in report.integrations] == ["ticketing"]
    assert [e.field for e in report.errors] == ["id", "(whole file)"]
    assert "a.yaml declares it already" in str(report.errors[0])


DEFINITION = """\
id: t
title: T
trigger: {{kind: schedule, cron: "0 6 * * mon"}}
condition: {{subject: accounts, where: [{{field: status, op: eq, value: active}}]}}
actions:
  - actioner: {actioner}
    params: {params}
"""


@pytest.fixture
def engine_with(make_engine: Callable[..., Engine], tmp_path: Path) -> Callable[[str, str], Engine]:
    def make(actioner: str, params: str) -> Engine:
        folder = tmp_path / "integrations"
        folder.mkdir(exist_ok=True)
        (folder / "ticketing.yaml").write_text(GOOD)
        (folder / "mail.yaml").write_text("id: mail\nkind: smtp\nhost: 127.0.0.1\nfrom: a@bank.example\n")
        return make_engine({"t": DEFINITION.format(actioner=actioner, params=params)}, integrations_dir=folder,
                           allow_rejected=True)
    return make


def rejected(engine: Engine) -> list[str]:
    return [str(e) for e in engine.catalog.load_directory(engine.definitions_dir, "member:admin").errors]


def test_a_definition_naming_an_undeclared_integration_is_refused_at_load(
        engine_with: Callable[[str, str], Engine]) -> None:
    [error] = rejected(engine_with("webhook:tracker", "{title: x}"))
    assert "field 'actions[0].actioner': expected a known actioner (" in error and "webhook:ticketing" in error
    assert "found 'webhook:tracker'" in error


def test_an_email_without_to_is_refused_at_load(engine_with: Callable[[str, str], Engine]) -> None:
    [error] = rejected(engine_with("email:mail", "{subject: s, body: b}"))
    assert error.endswith("field 'actions[0].params.to': expected a value for 'to' (required by email:mail); "
                          "found 'nothing'. Fix: add 'to:' under params")


def test_a_webhook_takes_any_params_but_checks_their_placeholders(
        engine_with: Callable[[str, str], Engine]) -> None:
    engine = engine_with("webhook:ticketing", "{anything: '{{ subject.name }}', n: 3}")
    assert rejected(engine) == []
    (engine.definitions_dir / "t.yaml").write_text(
        DEFINITION.format(actioner="webhook:ticketing", params="{title: '{{ subject.nmae }}'}"))
    [error] = rejected(engine)
    assert "'nmae' does not exist on subject" in error


def test_each_declaration_is_a_version_audited_once(engine_with: Callable[[str, str], Engine]) -> None:
    engine = engine_with("webhook:ticketing", "{title: x}")
    engine.load_definitions(actor="member:admin")  # the same files again: no new version
    versioned = audit_of(engine, "integration.versioned")
    assert sorted((e["entity_id"], e["payload"]["version"]) for e in versioned) == [("mail", 1), ("ticketing", 1)]
    (engine.integrations_dir / "ticketing.yaml").write_text(GOOD.replace("/api/issues", "/api/v2/issues"))
    engine.load_definitions(actor="member:admin")
    latest = audit_of(engine, "integration.versioned")[-1]
    assert (latest["entity_id"], latest["payload"]["version"]) == ("ticketing", 2)
    assert latest["payload"]["described"] == "webhook POST https://tracker.example/api/v2/issues (signed)"


def test_a_missing_secret_is_reported_when_the_integration_loads(engine_with: Callable[[str, str], Engine]) -> None:
    engine = engine_with("webhook:ticketing", "{title: x}")
    assert engine.integrations.unset["ticketing"][0].startswith(
        "integration ticketing needs the secret TICKETING_HMAC, which is not set: set the environment variable "
        "TICKETING_HMAC")
    assert engine.integrations.unset_names == {"ticketing": ["TICKETING_HMAC", "TICKETING_TOKEN"]}


def test_secrets_come_from_the_environment_then_a_private_secrets_file(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('TICKETING_HMAC = "from-the-file"\n')
    secrets.chmod(0o600)
    monkeypatch.setenv("RUNLEDGER_SECRETS_FILE", str(secrets))
    assert read_secret("TICKETING_HMAC", "ticketing") == "from-the-file"
    monkeypatch.setenv("TICKETING_HMAC", "from-the-environment")
    assert read_secret("TICKETING_HMAC", "ticketing") == "from-the-environment"
    secrets.chmod(0o644)
    with pytest.raises(MissingSecret, match=r"can be read by other users; make it readable by the engine's user "
                                            r"only \(chmod 600"):
        read_secret("OTHER", "ticketing")


def test_a_workspace_of_schema_6_gains_attempt_evidence_and_integration_versions(tmp_path: Path) -> None:
    path = tmp_path / "ws.duckdb"
    Workspace(str(path)).close()
    con = duckdb.connect(str(path))
    con.execute("DROP INDEX ix_attempts_item")  # schema 14's; DuckDB drops no column of a table with an index
    con.execute("ALTER TABLE item_attempts DROP COLUMN evidence")
    con.execute("DROP TABLE integration_versions")
    con.execute("UPDATE schema_meta SET value = '6' WHERE key = 'schema_version'")
    con.close()
    ws = Workspace(str(path))
    try:
        with ws.read() as conn:
            assert conn.execute(sa.text("SELECT value FROM schema_meta")).scalar() == str(SCHEMA_VERSION)
            assert "evidence" in conn.execute(sa.text("SELECT * FROM item_attempts LIMIT 0")).keys()
            assert conn.execute(sa.text("SELECT count(*) FROM integration_versions")).scalar() == 0
    finally:
        ws.close()


def test_the_readme_example_declarations_parse() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:]]
    examples = [b for b in blocks if "kind: webhook" in b or "kind: smtp" in b]
    assert len(examples) >= 2
    for text in examples:
        parse_integration(textwrap.dedent(text), "README.md")
