"""The managers' notebooks: thin, parameterised, stripped, and executing cleanly on generated data (R28).

Also the demo-data generator they run on: all five channels, duplicates, merges, removed tags.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from socialdesk.reporting import ORDER, notebooks, run_report
from warehouse import channels, open_store
from warehouse.demo_data import accounts, generate, generate_store
from warehouse.store import Store


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "desk.duckdb"
    generate_store(path, 2000, seed=5)
    return path


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "d.duckdb")
    yield s
    s.close()


def test_every_theme_has_a_notebook_and_each_is_stripped_and_parameterised() -> None:
    books = notebooks()
    assert [b.stem for b in books] == list(ORDER)
    for book in books:
        nb = json.loads(book.read_text())
        params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(params) == 1, book.name
        assert all(name in "".join(params[0]["source"]) for name in ("start", "end", "channels", "accounts"))
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{book.name} has outputs"


def test_the_report_command_executes_every_notebook_into_self_contained_html(demo_db: Path, tmp_path: Path) -> None:
    today = date.today()
    out = run_report(today - timedelta(days=30), today, tmp_path / "reports", db_path=str(demo_db), workers=2)
    assert [p.stem for p in out] == list(ORDER)
    for page in out:
        html = page.read_text()
        assert "data:image/png;base64" in html, f"{page.name} has no chart"
        executed = json.loads(page.with_suffix(".ipynb").read_text())
        outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
        assert not [o for o in outputs if o["output_type"] == "error" or o.get("name") == "stderr"], page.name
        assert 'src="http' not in html  # charts are embedded, nothing fetched


def test_demo_data_covers_every_channel_duplicates_merges_and_removed_tags(demo: Store) -> None:
    counts = demo.write(lambda con: generate(con, 3000, seed=11))
    assert counts["tickets"] == 3000 and counts["comments"] > 3000 and counts["events"] > counts["comments"]

    def q(sql: str) -> object:
        return demo.read(lambda c: c.execute(sql).fetchone()[0])

    assert q("SELECT count(DISTINCT channel) FROM tickets") == len(channels.every())
    assert q("SELECT count(DISTINCT account) FROM tickets") >= len(accounts())
    assert q("SELECT count(*) FROM (SELECT phone FROM users WHERE role = 'end-user' AND merged_into IS NULL "
             "AND phone IS NOT NULL GROUP BY phone HAVING count(*) > 1)") > 0
    assert q("SELECT count(*) FROM users WHERE merged_into IS NOT NULL") > 0
    assert q("SELECT count(*) FROM events WHERE kind = 'user_unmerged'") > 0
    assert q("SELECT count(*) FROM tickets WHERE NOT list_contains(tags, 'messaging_support')") > 0
    assert q("SELECT count(*) FROM outbox WHERE window_closed") > 0
    assert q("SELECT count(*) FROM outbox WHERE template IS NOT NULL") > 0
    assert q("SELECT count(*) FROM events WHERE kind = 'reply_retry'") > 0
    # Consistent with the schema: every comment's ticket exists, every reply has its comment.
    assert q("SELECT count(*) FROM comments c ANTI JOIN tickets t ON t.id = c.ticket_id") == 0
    assert q("SELECT count(*) FROM outbox o ANTI JOIN comments c ON c.id = o.comment_id") == 0
    assert q("SELECT count(*) FROM tickets t ANTI JOIN users u ON u.id = t.requester_id") == 0
    # Ids came from the sequences: the next id is above every generated one.
    assert q("SELECT nextval('ticket_ids')") > q("SELECT max(id) FROM tickets")


def test_demo_data_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    def fingerprint(path: Path) -> tuple:
        generate_store(path, 500, seed=9)
        s = open_store(path)
        try:
            return s.read(lambda c: c.execute(
                "SELECT (SELECT sum(hash(id, status, created_at, tags)) FROM tickets), "
                "(SELECT count(*) FROM events)").fetchone())
        finally:
            s.close()

    assert fingerprint(tmp_path / "a.duckdb") == fingerprint(tmp_path / "b.duckdb")
