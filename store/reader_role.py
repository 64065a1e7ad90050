"""A read-only PostgreSQL role for auditors' BI tools: the public contract (``store.contract``), nothing else.

One SQL script does the work, whether the command runs it (``grant_reader``) or prints it for a DBA
(``python -m engine grant-reader --print``): create the role if it is missing (LOGIN, no password: a secret
never passes through Runledger's arguments or files), refuse a role that would read everything anyway (a
superuser, the connecting user, an owner), take back every privilege and membership it holds, then grant
CONNECT, USAGE on the workspace's schema, SELECT on the public tables and, of ``members`` and
``intake_sources``, SELECT on their readable columns only. Taking everything back and granting the contract
in one transaction is what makes a re-run converge: a grant widened by hand, or a table that left the
contract, is gone after it, and a concurrent reader never sees a half-granted state.

When the command runs it, it also reads what the role may *effectively* do before and after (PostgreSQL's
``has_*_privilege``, which counts grants to PUBLIC and to roles it belongs to) and commits only if that is
exactly the contract; the difference is reported and audited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlalchemy as sa

from store.contract import PRIVATE_TABLES, PUBLIC_COLUMNS, PUBLIC_TABLES
from store.errors import StoreError
from store.schema import registers
from store.tx import Tx

# A plain lower-case identifier: the same unquoted and quoted, safe to write into the script's literals.
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# (kind, object, privilege): ("table", "runs", "SELECT"), ("column", "members.email", "SELECT"),
# ("database", "runledger", "CONNECT"), ("role", "auditor_bi", "CREATEDB"), ("member of", "runledger", "MEMBER").
Privilege = tuple[str, str, str]


class ReaderRoleRefused(StoreError):
    """The reader role could not be made as the contract says; nothing was changed."""


class BadRoleName(ReaderRoleRefused):
    """The role name given is not one this command will create (a usage error)."""


def check_role_name(role: str) -> str:
    """The role name, if it is a plain lower-case identifier PostgreSQL lets us create."""
    if not _ROLE_NAME.match(role):
        raise BadRoleName(f"--role {role!r}: use 1–63 lower-case letters, digits or '_', starting with a letter "
                          "or '_' (e.g. auditor_bi).")
    if role.startswith("pg_") or role == "public":
        raise BadRoleName(f"--role {role}: PostgreSQL reserves the name {role!r} (and every name starting "
                          "with 'pg_'); choose another, e.g. auditor_bi.")
    return role


@dataclass(frozen=True)
class ReaderGrant:
    """What the role is to read: the workspace's database and schema, the tables readable whole (the public
    ones and each register's), and the tables readable in part with their columns."""

    role: str
    database: str
    schema: str
    tables: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]

    def privileges(self) -> set[Privilege]:
        """Everything the role may do once granted, in the terms of ``read_reader_privileges``."""
        out: set[Privilege] = {("database", self.database, "CONNECT"), ("schema", self.schema, "USAGE")}
        out |= {("table", t, "SELECT") for t in self.tables}
        out |= {("column", f"{t}.{c}", "SELECT") for t, cols in self.columns.items() for c in cols}
        return out


@dataclass(frozen=True)
class ReaderGrantReport:
    grant: ReaderGrant
    created: bool
    granted: set[Privilege] = field(default_factory=set)
    revoked: set[Privilege] = field(default_factory=set)


def plan_reader_grant(conn: sa.Connection, role: str) -> ReaderGrant:
    """The grant for this workspace as it is now: its declared registers' tables included."""
    database, schema = conn.execute(sa.text("SELECT current_database(), current_schema()")).one()
    if schema is None:
        raise ReaderRoleRefused("The connection has no current schema (its search_path names none that exists), "
                                "so the workspace's tables cannot be found; fix the search_path of the user "
                                "Runledger connects as.")
    declared = conn.execute(sa.select(registers.c.register_id).order_by(registers.c.register_id)).scalars()
    # A register's table exists once its declaration was taken; a name of Runledger's own never counts as one.
    register_tables = [name for name in declared if name not in PRIVATE_TABLES and name not in PUBLIC_COLUMNS
                       and conn.execute(sa.text("SELECT to_regclass(quote_ident(:s) || '.' || quote_ident(:t))"),
                                        {"s": schema, "t": name}).scalar() is not None]
    return ReaderGrant(role, database, schema, tuple(sorted({*PUBLIC_TABLES, *register_tables})),
                       dict(PUBLIC_COLUMNS))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def reader_grant_statements(grant: ReaderGrant) -> list[str]:
    """The script, one statement per item, to run in one transaction. No ``%`` anywhere: the driver then
    needs no escaping, and a DBA can paste it as it is."""
    role, db, schema = grant.role, grant.database, grant.schema
    q = _ident(role)

    def table(name: str) -> str:
        return f"{_ident(schema)}.{_ident(name)}"

    not_current = _literal(f"{role} is the database user this connects as; the reader must be another role: "
                           "choose another --role.")
    too_strong = _literal(f"role {role} is a superuser, a replication or a BYPASSRLS role: it would read "
                          f"everything, whatever it is granted. Choose another --role, or have a superuser run "
                          f"ALTER ROLE {role} NOSUPERUSER NOREPLICATION NOBYPASSRLS first.")
    owner = _literal(f"role {role} owns objects in database {db} (an owner may grant itself anything): choose "
                     "another --role.")
    checks = f"""DO $runledger$
DECLARE
    reader record;
BEGIN
    SELECT oid, rolsuper, rolreplication, rolbypassrls, rolcreatedb, rolcreaterole INTO reader
        FROM pg_roles WHERE rolname = {_literal(role)};
    IF NOT FOUND THEN
        CREATE ROLE {q} LOGIN;  -- without a password: a DBA sets one with psql's \\password
        RETURN;
    END IF;
    IF {_literal(role)} = current_user THEN
        RAISE EXCEPTION USING MESSAGE = {not_current};
    END IF;
    IF reader.rolsuper OR reader.rolreplication OR reader.rolbypassrls THEN
        RAISE EXCEPTION USING MESSAGE = {too_strong};
    END IF;
    IF EXISTS (SELECT FROM pg_class WHERE relowner = reader.oid)
            OR EXISTS (SELECT FROM pg_namespace WHERE nspowner = reader.oid)
            OR EXISTS (SELECT FROM pg_database WHERE datname = current_database() AND datdba = reader.oid) THEN
        RAISE EXCEPTION USING MESSAGE = {owner};
    END IF;
    IF reader.rolcreatedb OR reader.rolcreaterole THEN
        ALTER ROLE {q} NOCREATEDB NOCREATEROLE;
    END IF;
END
$runledger$"""
    # Everything it was given, by whoever: memberships (a role inherits its groups' privileges), then every
    # table's, column's, sequence's and schema's privileges in this database (revoking a table's privileges
    # revokes its columns' too).
    take_back = f"""DO $runledger$
DECLARE
    reader oid := (SELECT oid FROM pg_roles WHERE rolname = {_literal(role)});
    target record;
BEGIN
    FOR target IN
        SELECT quote_ident(g.rolname) AS name FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
        WHERE m.member = reader
    LOOP
        EXECUTE 'REVOKE ' || target.name || ' FROM ' || {_literal(q)};
    END LOOP;
    FOR target IN
        SELECT c.oid::regclass::text AS name, c.relkind FROM pg_class c
        WHERE EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = reader)
           OR EXISTS (SELECT FROM pg_attribute t, aclexplode(t.attacl) a
                      WHERE t.attrelid = c.oid AND a.grantee = reader)
    LOOP
        EXECUTE 'REVOKE ALL ON ' || CASE WHEN target.relkind = 'S' THEN 'SEQUENCE ' ELSE 'TABLE ' END
                || target.name || ' FROM ' || {_literal(q)};
    END LOOP;
    FOR target IN
        SELECT quote_ident(n.nspname) AS name FROM pg_namespace n
        WHERE EXISTS (SELECT FROM aclexplode(n.nspacl) a WHERE a.grantee = reader)
    LOOP
        EXECUTE 'REVOKE ALL ON SCHEMA ' || target.name || ' FROM ' || {_literal(q)};
    END LOOP;
END
$runledger$"""
    out = [checks, take_back,
           f"REVOKE ALL ON DATABASE {_ident(db)} FROM {q}",
           f"GRANT CONNECT ON DATABASE {_ident(db)} TO {q}",
           f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {q}",
           f"GRANT SELECT ON TABLE {', '.join(table(t) for t in grant.tables)} TO {q}"]
    for name, cols in sorted(grant.columns.items()):
        out.append(f"GRANT SELECT ({', '.join(_ident(c) for c in cols)}) ON TABLE {table(name)} TO {q}")
    return out


def reader_grant_script(grant: ReaderGrant, workspace: str) -> str:
    """The statements as a script a DBA runs with psql, in one transaction."""
    head = (f"-- Runledger: the read-only role {grant.role} for auditors' BI tools, on {workspace}.\n"
            f"-- It may read the public contract of docs/schema.md in database {grant.database}, schema "
            f"{grant.schema}, and nothing else.\n"
            "-- Run it as the workspace's owner (with CREATEROLE) or a superuser: psql -v ON_ERROR_STOP=1 -f FILE\n")
    return head + "BEGIN;\n" + "".join(f"{s};\n" for s in reader_grant_statements(grant)) + "COMMIT;\n"


_PRIVILEGES_SQL = """
WITH r AS (SELECT oid FROM pg_roles WHERE rolname = :role),
     s AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = :schema),
     rel AS (SELECT c.oid, c.relname, c.relkind FROM pg_class c, s WHERE c.relnamespace = s.oid)
SELECT 'table', rel.relname, p.priv FROM rel, r,
       unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(priv)
 WHERE rel.relkind IN ('r', 'p', 'v', 'm', 'f') AND has_table_privilege(r.oid, rel.oid, p.priv)
UNION ALL
SELECT 'column', rel.relname || '.' || a.attname, p.priv FROM rel, r, pg_attribute a,
       unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) AS p(priv)
 WHERE a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped AND rel.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND has_column_privilege(r.oid, rel.oid, a.attnum, p.priv) AND NOT has_table_privilege(r.oid, rel.oid, p.priv)
UNION ALL
SELECT 'sequence', rel.relname, p.priv FROM rel, r, unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p(priv)
 WHERE rel.relkind = 'S' AND has_sequence_privilege(r.oid, rel.oid, p.priv)
UNION ALL
SELECT 'schema', s.nspname, p.priv FROM s, r, unnest(ARRAY['USAGE', 'CREATE']) AS p(priv)
 WHERE has_schema_privilege(r.oid, s.oid, p.priv)
UNION ALL
SELECT 'database', current_database(), p.priv FROM r, unnest(ARRAY['CONNECT', 'CREATE']) AS p(priv)
 WHERE has_database_privilege(r.oid, current_database(), p.priv)
UNION ALL
SELECT 'role', g.rolname, a.attr FROM pg_roles g, r,
       unnest(ARRAY['SUPERUSER', 'CREATEDB', 'CREATEROLE', 'REPLICATION', 'BYPASSRLS'],
              ARRAY[g.rolsuper, g.rolcreatedb, g.rolcreaterole, g.rolreplication, g.rolbypassrls]) AS a(attr, held)
 WHERE g.oid = r.oid AND a.held
UNION ALL
SELECT 'member of', g.rolname, 'MEMBER' FROM pg_auth_members m, pg_roles g, r
 WHERE m.member = r.oid AND g.oid = m.roleid
"""


def read_reader_privileges(conn: sa.Connection, role: str, schema: str) -> set[Privilege]:
    """What ``role`` may effectively do in the workspace's schema and database (PUBLIC's grants and its groups'
    included), its role attributes and memberships; empty for a role that does not exist. Temporary tables are
    left out: PostgreSQL grants TEMP on every database to PUBLIC, and a session's own tables hold nothing of
    the workspace."""
    rows = conn.execute(sa.text(_PRIVILEGES_SQL), {"role": role, "schema": schema})
    return {(str(kind), str(obj), str(priv)) for kind, obj, priv in rows}


def describe_privileges(privileges: set[Privilege]) -> list[str]:
    """Grouped for reading: ``SELECT on tables alerts, approvals, …``; ``SELECT on columns of members: …``."""
    groups: dict[tuple[str, str], list[str]] = {}
    for kind, obj, priv in privileges:
        if kind == "column":
            name, _, column = obj.partition(".")
            groups.setdefault((f"{priv} on columns of {name}:", ""), []).append(column)
        elif kind == "role":
            groups.setdefault(("the role attribute", ""), []).append(priv)
        elif kind == "member of":
            groups.setdefault(("membership of", ""), []).append(obj)
        else:
            groups.setdefault((f"{priv} on {kind}", "s" if kind in ("table", "sequence") else ""), []).append(obj)
    lines = []
    for (what, plural), names in sorted(groups.items()):
        lines.append(f"{what}{plural if len(names) > 1 else ''} {', '.join(sorted(names))}")
    return lines


def _refusal_of(exc: sa.exc.DBAPIError, user: str) -> ReaderRoleRefused | None:
    """A database error a person can act on: the script's own refusals and missing privileges."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    message = getattr(diag, "message_primary", None) or str(orig).splitlines()[0]
    if code == "P0001":  # RAISE EXCEPTION in the script: its message already says what to do
        return ReaderRoleRefused(f"{message} Nothing was changed.")
    if code == "42501":  # insufficient_privilege
        return ReaderRoleRefused(
            f"The database user {user} may not do what this needs ({message}). Nothing was changed. Run it as "
            f"the workspace's owner with CREATEROLE, or as a superuser; or print the SQL with --print and have "
            "a DBA run it.")
    return None


def grant_reader(tx: Tx, role: str) -> ReaderGrantReport:
    """Create or update ``role`` so that it reads exactly the public contract, in ``tx`` (the caller's
    transaction: nothing is changed unless it commits); audited when anything changed."""
    check_role_name(role)
    if tx.conn.dialect.name != "postgresql":
        raise ReaderRoleRefused("A DuckDB workspace has no roles (and no other process can read the file "
                                "while the engine holds it).")
    user = str(tx.conn.execute(sa.text("SELECT current_user")).scalar())
    grant = plan_reader_grant(tx.conn, role)
    existed = tx.conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
    before = read_reader_privileges(tx.conn, role, grant.schema)
    try:
        for statement in reader_grant_statements(grant):
            tx.conn.exec_driver_sql(statement)
    except sa.exc.DBAPIError as exc:  # the transaction is lost: raised on, so that the caller rolls it back
        refusal = _refusal_of(exc, user)
        if refusal is None:
            raise
        raise refusal from exc
    after = read_reader_privileges(tx.conn, role, grant.schema)
    wanted = grant.privileges()
    if after != wanted:  # rolled back: a reader that sees more, or less, than the contract is no reader
        raise ReaderRoleRefused(_mismatch(role, user, after - wanted, wanted - after))
    report = ReaderGrantReport(grant, created=existed is None, granted=after - before, revoked=before - after)
    if report.created or report.granted or report.revoked:
        tx.audit(f"database:{user}", "reader_role.granted", "database_role", role, {
            "database": grant.database, "schema": grant.schema, "created": report.created,
            "granted": describe_privileges(report.granted), "revoked": describe_privileges(report.revoked)})
    return report


def _mismatch(role: str, user: str, extra: set[Privilege], missing: set[Privilege]) -> str:
    parts = [f"Role {role} would not read exactly the public contract, so nothing was changed."]
    if extra:
        parts.append(f"It could still: {'; '.join(describe_privileges(extra))} — granted to PUBLIC or to a role "
                     f"{role} belongs to, beyond what {user} may take back; revoke that by hand (e.g. REVOKE ALL "
                     "ON TABLE … FROM PUBLIC) and run this again.")
    if missing:
        parts.append(f"It could not be granted: {'; '.join(describe_privileges(missing))} — {user} does not own "
                     "those objects; run this as the workspace's owner (the user Runledger connects as) or a "
                     "superuser.")
    return " ".join(parts)
