"""`warehouse.connect()`: the live service's store over Quack, else the file read-only (R28).

The live tests serve a real Store over Quack in this process on a free loopback port and attach it
from a separate in-memory DuckDB connection, as a notebook does.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import ingest, msg
from warehouse import open_store, reports
from warehouse.connect import NoStore, connect, extension_path, load_quack, serve_quack, stop_quack, store_settings
from warehouse.store import Store

TOKEN = "test-quack-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(store: Store) -> Iterator[tuple[Store, int]]:
    port = free_port()
    uri = serve_quack(store.connection, "127.0.0.1", port, TOKEN)
    yield store, port
    stop_quack(store.connection, uri)


def test_the_extensions_load_from_the_installed_wheels() -> None:
    for name in ("quack", "httpfs"):
        assert Path(extension_path(name)).is_file()


def test_a_reader_attaches_the_running_service_store_live(served: tuple[Store, int], tmp_path: Path) -> None:
    store, port = served
    con = connect(path=store.path, quack_port=port, quack_token=TOKEN, live=True)
    try:
        assert con.execute("SELECT current_database()").fetchone()[0] == "desk"
        before = con.execute("SELECT count(*) FROM tickets").fetchone()[0]
        ingest(store, msg(user="33600000009"))  # committed after the reader attached
        assert con.execute("SELECT count(*) FROM tickets").fetchone()[0] == before + 1
    finally:
        con.close()


def test_reports_over_the_live_store_match_the_local_answer(served: tuple[Store, int]) -> None:
    store, port = served
    ingest(store, msg(user="33600000001"), msg(account="PN2", user="33600000002"))
    day = date(2026, 11, 24)
    local = store.read(lambda c: reports.volume(c, day, day))
    con = connect(path=store.path, quack_port=port, quack_token=TOKEN, live=True)
    try:
        live = reports.volume(con, day, day)
    finally:
        con.close()
    assert live.to_dict("records") == local.to_dict("records") and live["tickets"].sum() == 2


def test_a_live_reader_cannot_write(served: tuple[Store, int]) -> None:
    store, port = served
    con = connect(path=store.path, quack_port=port, quack_token=TOKEN, live=True)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("INSERT INTO accounts VALUES ('line', 'L9', 'x', '{}')")
    finally:
        con.close()
    assert store.read(lambda c: c.execute("SELECT count(*) FROM accounts WHERE account = 'L9'").fetchone()[0]) == 0


def test_a_wrong_token_is_refused(served: tuple[Store, int]) -> None:
    store, port = served
    with pytest.raises(duckdb.Error, match="Authentication failed"):
        connect(path=store.path, quack_port=port, quack_token="not-the-token", live=True)


def test_without_the_service_the_file_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "desk.duckdb"
    s = open_store(path)
    ingest(s, msg(user="33600000001"))
    s.close()
    con = connect(path=path, quack_port=free_port(), quack_token=TOKEN)  # nobody serves: falls back to the file
    try:
        assert con.execute("SELECT count(*) FROM tickets").fetchone()[0] == 1
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM tickets")
    finally:
        con.close()


def test_no_service_and_no_file_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(NoStore, match="no store"):
        connect(path=tmp_path / "missing.duckdb", quack_port=free_port(), quack_token=TOKEN)


def test_settings_come_from_the_configuration_store_section(tmp_path: Path, monkeypatch: Any) -> None:
    cfg = tmp_path / "socialdesk.toml"
    cfg.write_text('[store]\npath = "x.duckdb"\nquack_port = 9555\nquack_token = "${QT}"\n\n[server]\nport = 1\n')
    monkeypatch.setenv("QT", "from-env")
    monkeypatch.delenv("SOCIALDESK_DB", raising=False)
    s = store_settings(cfg)
    assert (s.path, s.quack_port, s.quack_token, s.quack_host) == ("x.duckdb", 9555, "from-env", "127.0.0.1")


def test_serving_needs_a_token_and_stays_on_loopback(store: Store) -> None:
    with pytest.raises(ValueError, match="token"):
        serve_quack(store.connection, "127.0.0.1", free_port(), "")
    with pytest.raises(ValueError, match="loopback"):
        serve_quack(store.connection, "0.0.0.0", free_port(), TOKEN)


def test_every_report_gives_the_same_answer_live_and_offline(tmp_path: Path) -> None:
    """R28: notebooks read the same store as the bot, whichever way they reach it."""
    from pandas.testing import assert_frame_equal

    from warehouse.demo_data import generate

    s = open_store(tmp_path / "desk.duckdb")
    s.write(lambda c: generate(c, 300, seed=3))
    port = free_port()
    uri = serve_quack(s.connection, "127.0.0.1", port, TOKEN)
    try:
        local = s.read(lambda c: reports.all_reports(c, "2000-01-01", "2100-01-01"))
        con = connect(path=s.path, quack_port=port, quack_token=TOKEN, live=True)
        try:
            live = reports.all_reports(con, "2000-01-01", "2100-01-01")
        finally:
            con.close()
    finally:
        stop_quack(s.connection, uri)
        s.close()
    for name, frame in local.items():
        assert not frame.empty, name
        assert_frame_equal(live[name].drop(columns=["age"], errors="ignore"),
                           frame.drop(columns=["age"], errors="ignore"), check_dtype=False, obj=name)


@pytest.mark.parametrize("attack", [
    "UPDATE tickets SET status = 'closed'", "DROP TABLE inbox", "DELETE FROM comments",
    "SELECT * FROM read_text('/etc/shadow')", "SELECT * FROM '/etc/passwd'", "COPY tickets TO '/tmp/stolen.csv'",
    "ATTACH '/tmp/other.duckdb' AS other", "INSTALL httpfs", "SET enable_external_access = true",
    "WITH x AS (SELECT 1) INSERT INTO accounts SELECT 'line', 'L9', 'x', '{}' FROM x",
    "SELECT (SELECT content FROM read_text('/etc/hostname'))", "SELECT * FROM glob('/*')",
    "SELECT 1; DROP TABLE inbox",
])
def test_the_notebook_token_gives_reads_only_issue_13(served: tuple[Store, int], attack: str) -> None:
    """Whoever holds the token may send the service any SQL (quack_query): only reads of the store run."""
    store, port = served
    Path("/tmp/stolen.csv").unlink(missing_ok=True)
    ingest(store, msg(user="33600000001"))
    reader = duckdb.connect()
    load_quack(reader)
    with pytest.raises(duckdb.Error, match="Authorization failed"):
        reader.execute(f"SELECT * FROM quack_query('quack:localhost:{port}', ?, token := '{TOKEN}')",
                       [attack]).fetchall()
    assert store.read(lambda c: c.execute("SELECT count(*), min(status) FROM tickets").fetchone()) == (1, "new")
    assert not Path("/tmp/stolen.csv").exists()


def test_reads_of_the_store_are_authorized(served: tuple[Store, int]) -> None:
    store, port = served
    ingest(store, msg(user="33600000001"))
    reader = duckdb.connect()
    load_quack(reader)
    query = ("SELECT count(*) FROM tickets t JOIN users u ON u.id = t.requester_id "
             "WHERE list_contains(t.tags, 'whatsapp')")
    assert reader.execute(f"SELECT * FROM quack_query('quack:localhost:{port}', ?, token := '{TOKEN}')",
                          [query]).fetchall() == [(1,)]
