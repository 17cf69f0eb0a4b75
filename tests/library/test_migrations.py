"""Migration runner: numbered, named, recorded, idempotent, atomic, namespaced."""

from __future__ import annotations

import sqlite3

import pytest

from albumen.library.migrations import Migration, MigrationError, applied_migrations, apply_migrations


def _conn() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None)


M1 = Migration(1, "create a", "CREATE TABLE a (x INTEGER)")
M2 = Migration(2, "create b and index", "CREATE TABLE b (y TEXT); CREATE INDEX b_y ON b(y)")


def test_applies_in_order_and_records_each_migration() -> None:
    conn = _conn()
    done = apply_migrations(conn, "demo", [M2, M1])
    assert [m.version for m in done] == [1, 2]
    assert applied_migrations(conn, "demo") == {1: "create a", 2: "create b and index"}
    conn.execute("INSERT INTO b VALUES ('ok')")
    row = conn.execute("SELECT applied_at FROM schema_migrations WHERE namespace='demo' AND version=2").fetchone()
    assert row[0].endswith("+00:00")


def test_second_run_is_a_no_op() -> None:
    conn = _conn()
    apply_migrations(conn, "demo", [M1, M2])
    assert apply_migrations(conn, "demo", [M1, M2]) == []
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == 2


def test_new_migration_is_applied_on_top() -> None:
    conn = _conn()
    apply_migrations(conn, "demo", [M1])
    assert [m.version for m in apply_migrations(conn, "demo", [M1, M2])] == [2]


def test_namespaces_are_independent() -> None:
    conn = _conn()
    apply_migrations(conn, "demo", [M1])
    apply_migrations(conn, "other", [Migration(1, "create c", "CREATE TABLE c (z)")])
    assert applied_migrations(conn, "demo") == {1: "create a"}
    assert applied_migrations(conn, "other") == {1: "create c"}


def test_failed_migration_leaves_no_trace() -> None:
    conn = _conn()
    apply_migrations(conn, "demo", [M1])
    bad = Migration(2, "half broken", "CREATE TABLE half (x); INSERT INTO no_such_table VALUES (1)")
    with pytest.raises(MigrationError, match="half broken"):
        apply_migrations(conn, "demo", [M1, bad])
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half" not in tables
    assert applied_migrations(conn, "demo") == {1: "create a"}
    assert not conn.in_transaction


def test_renamed_migration_is_refused() -> None:
    conn = _conn()
    apply_migrations(conn, "demo", [M1])
    with pytest.raises(MigrationError, match="'create a' in the database"):
        apply_migrations(conn, "demo", [Migration(1, "something else", "SELECT 1")])


def test_database_from_a_newer_version_is_refused() -> None:
    conn = _conn()
    apply_migrations(conn, "demo", [M1, M2])
    with pytest.raises(MigrationError, match="newer Albumen"):
        apply_migrations(conn, "demo", [M1])


@pytest.mark.parametrize(
    "namespace, migrations, message",
    [
        ("Bad Name", [M1], "namespace"),
        ("demo", [M1, Migration(1, "dup", "SELECT 1")], "share version"),
        ("demo", [Migration(0, "zero", "SELECT 1")], "start at 1"),
        ("demo", [Migration(1, " ", "SELECT 1")], "no name"),
    ],
)
def test_bad_migration_lists_are_refused(namespace: str, migrations: list[Migration], message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        apply_migrations(_conn(), namespace, migrations)


def test_names_with_quotes_are_recorded_verbatim() -> None:
    conn = _conn()
    apply_migrations(conn, "demo", [Migration(1, "it's; DROP TABLE x", "CREATE TABLE q (x)")])
    assert applied_migrations(conn, "demo") == {1: "it's; DROP TABLE x"}
