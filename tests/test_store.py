"""The store: migrations, group commit, isolation of failing writes."""

from __future__ import annotations

import asyncio
import threading

import duckdb
import pytest

from warehouse import open_store
from warehouse.store import Store, StoreBusy, migrate, migrations


def test_a_new_store_has_every_migration_recorded(store: Store) -> None:
    rows = store.read(lambda c: c.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall())
    versions = [v for (v,) in rows]
    assert versions == [v for v, _, _ in migrations()]


def test_an_old_store_is_upgraded_at_start_up_and_keeps_its_data(tmp_path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
                "applied_at TIMESTAMP NOT NULL)")
    version, name, sql = migrations()[0]
    con.execute(sql)
    con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
    con.execute("INSERT INTO users VALUES (1, 'end-user', 'Old', NULL, '{}', NULL, NULL, now(), now())")
    con.close()
    with open_store(path) as store:
        assert store.read(lambda c: c.execute("SELECT name FROM users").fetchall()) == [("Old",)]
        applied = store.read(lambda c: c.execute("SELECT count(*) FROM schema_migrations").fetchone()[0])
        assert applied == len(migrations())
        assert store.read(lambda c: c.execute("SELECT count(*) FROM views").fetchone()[0]) == 2


def test_migrating_twice_applies_nothing(store: Store) -> None:
    assert store.write(migrate) == []


def test_concurrent_writes_share_commits(store: Store) -> None:
    store.write(lambda c: c.execute("CREATE TABLE t (i INTEGER)"))
    before = store.commits
    gate = threading.Event()
    store.submit(lambda c: gate.wait(5))  # holds the writer so the next writes queue up together
    futures = [store.submit(lambda c, i=i: c.execute("INSERT INTO t VALUES (?)", [i])) for i in range(200)]
    gate.set()
    for f in futures:
        f.result()
    assert store.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 200
    assert store.commits - before <= 3


def test_a_failing_write_fails_alone(store: Store) -> None:
    store.write(lambda c: c.execute("CREATE TABLE t (i INTEGER)"))
    gate = threading.Event()
    store.submit(lambda c: gate.wait(5))
    good = store.submit(lambda c: c.execute("INSERT INTO t VALUES (1)"))
    bad = store.submit(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"))
    gate.set()
    good.result()
    with pytest.raises(duckdb.CatalogException):
        bad.result()
    assert store.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 1


def test_payloads_queued_together_commit_in_one_round_and_a_failing_one_fails_alone(store: Store) -> None:
    store.write(lambda c: c.execute("CREATE TABLE t (i INTEGER)"))

    def insert_all(con: duckdb.DuckDBPyConnection, payloads: list[int]) -> list[int]:
        con.execute("INSERT INTO t SELECT unnest(?::INTEGER[])", [payloads])
        if -1 in payloads:
            raise ValueError("a bad payload")
        return payloads

    before = store.commits
    results = asyncio.run(store.abatch_all(insert_all, [1, 2, -1, 3]))
    assert results[:2] == [1, 2] and results[3] == 3
    assert isinstance(results[2], ValueError)
    assert store.read(lambda c: c.execute("SELECT list(i ORDER BY i) FROM t").fetchone()[0]) == [1, 2, 3]
    assert store.commits - before == 3  # the shared round failed; then each payload alone, the bad one rolled back


def test_a_second_process_cannot_open_a_held_store(tmp_path) -> None:
    import subprocess
    import sys
    path = tmp_path / "held.duckdb"
    with open_store(path):
        code = ("import sys\nfrom warehouse.store import Store, StoreBusy\ntry:\n    Store(sys.argv[1])\n"
                "except StoreBusy as e:\n    print(e)\n    sys.exit(3)\n")
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.returncode == 3, out.stderr
    assert "in use by another process" in out.stdout
    assert StoreBusy.__doc__


def test_a_damaged_store_is_reported_as_damaged_with_how_to_restore_issue_13(tmp_path) -> None:
    from warehouse.store import StoreDamaged
    path = tmp_path / "damaged.duckdb"
    open_store(path).close()
    data = bytearray(path.read_bytes())
    data[5000:9000] = b"x" * 4000  # a block's checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(StoreDamaged, match="damaged .* restore the latest backup"):
        Store(path).read(lambda c: c.execute("SELECT count(*) FROM tickets").fetchone())


def test_a_file_that_is_no_store_is_reported_as_damaged_not_busy_issue_13(tmp_path) -> None:
    from warehouse.store import StoreDamaged
    path = tmp_path / "not-a-store.duckdb"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreDamaged, match="not a valid DuckDB database"):
        Store(path)


def test_the_store_directory_and_files_are_the_services_users_alone_issue_13(tmp_path) -> None:
    path = tmp_path / "fresh" / "desk.duckdb"
    with open_store(path) as s:
        s.write(lambda c: c.execute("CREATE TABLE IF NOT EXISTS t (i INTEGER)"))
        assert path.parent.stat().st_mode & 0o777 == 0o700
        assert path.stat().st_mode & 0o077 == 0
