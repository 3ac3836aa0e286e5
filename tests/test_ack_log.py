"""Issue 15: a webhook is acknowledged once what it carried is in the log; tickets are built right behind
it, in log order; a delivery that cannot become a ticket is dead-lettered with its error and input, and
everything else carries on (B4: nothing acknowledged is lost, nothing is stored twice).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import warehouse.log
import warehouse.store
from socialdesk.cli import main
from socialdesk.config import Config
from socialdesk.fakes.meta_api import WHATSAPP_PARIS
from socialdesk.operations import OPERATIONS
from socialdesk.sandbox import Sandbox
from socialdesk.service import DESK, STORE, build_app
from tests.conftest import later, msg
from warehouse import open_store
from warehouse.desk import Desk
from warehouse.entries import entry_of
from warehouse.ingest import Delivery
from warehouse.log import Append
from warehouse.rows import sql_list
from warehouse.store import Store
from warehouse.tickets import Actor

CUSTOMER = "33612345678"


def poison_body(sandbox: Sandbox) -> bytes:
    """A WhatsApp webhook carrying a valid message and, beside it, one whose text is a lone UTF-16
    surrogate (`\\ud83d`, half an emoji): valid JSON, which no UTF-8 column can hold."""
    body = json.loads(sandbox.message("whatsapp", WHATSAPP_PARIS, CUSTOMER, "Bonjour", "wamid.valid",
                                      datetime.now(UTC)))
    messages = body["entry"][0]["changes"][0]["value"]["messages"]
    messages.append({**messages[0], "id": "wamid.poison", "text": {"body": "POISON"}})
    return json.dumps(body, separators=(",", ":")).replace("POISON", "half an emoji \\ud83d").encode()


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[tuple[Sandbox, Any]]:
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config())
    cfg.store.path = str(tmp_path / "log.duckdb")
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client
    await client.close()
    await sandbox.stop()


async def post(client: Any, sandbox: Sandbox, body: bytes) -> int:
    req = sandbox.request("whatsapp", WHATSAPP_PARIS, body)
    resp = await client.post(req.path, data=req.body, headers=req.headers)
    return int(resp.status)


def sql(store: Store, query: str, *, fresh: bool = True) -> list[tuple[Any, ...]]:
    return store.read(lambda c: c.execute(query).fetchall(), fresh=fresh)


async def test_the_poison_body_is_answered_200_its_sibling_becomes_a_ticket_and_the_bad_item_is_a_dead_letter(
        world: Any) -> None:
    sandbox, client = world
    body = poison_body(sandbox)
    assert await post(client, sandbox, body) == 200  # it was 503 for ever: Meta retried it for days
    store = client.app[STORE]
    assert sql(store, "SELECT platform_message_id, body FROM comments") == [("wamid.valid", "Bonjour")]
    answer = await OPERATIONS["dead_letters"](client.app[DESK])
    [letter] = answer["dead_letters"]
    assert (letter["channel"], letter["kind"], letter["item"]["message_id"]) == ("whatsapp", "message", "wamid.poison")
    assert letter["item"]["text"] == "half an emoji \ud83d"  # the input exactly, for a retry after a fix
    assert "surrogates not allowed" in letter["error"]
    assert letter["raw"] == body.decode()  # and the raw body it came in
    metrics = await (await client.get("/metrics")).text()
    assert "socialdesk_dead_letters 1.0" in metrics and "socialdesk_ingest_log_waiting 0.0" in metrics

    # Replayed (a captured body resent): answered 200, nothing new, the body and the dead letter kept once.
    for _ in range(3):
        assert await post(client, sandbox, body) == 200
    assert sql(store, "SELECT count(*) FROM comments") == [(1,)]
    assert sql(store, "SELECT count(*) FROM inbox") == [(1,)]
    assert len((await OPERATIONS["dead_letters"](client.app[DESK]))["dead_letters"]) == 1


async def test_a_webhook_is_acknowledged_while_the_writer_is_busy_and_becomes_a_ticket_right_behind(
        world: Any) -> None:
    sandbox, client = world
    store = client.app[STORE]
    gate = threading.Event()
    held = store.submit(lambda con: gate.wait(30))  # a long write: the writer is busy
    try:
        body = sandbox.message("whatsapp", WHATSAPP_PARIS, CUSTOMER, "Where is my order?", "wamid.1", datetime.now(UTC))
        assert await asyncio.wait_for(post(client, sandbox, body), 20) == 200  # did not wait for the writer
        # Durable in the log, not yet a ticket.
        assert sql(store, "SELECT count(*) FROM inbox", fresh=False) == [(1,)]
        assert sql(store, "SELECT count(*) FROM tickets", fresh=False) == [(0,)]
    finally:
        gate.set()
        held.result(30)
    # A read waits for what was acknowledged before it (while the desk keeps up).
    assert sql(store, "SELECT status, subject FROM tickets") == [("new", "WhatsApp conversation with Demo Customer")]


def test_a_failing_delivery_fails_alone_and_everything_after_it_carries_on_in_log_order(store: Store) -> None:
    broken = [True]

    def triggers(con: Any, ticket_ids: list[int], update_type: str, actor: Actor,
                 comment_is_public: bool | None = None) -> None:
        """A rule with a bug: it fails on one customer's tickets."""
        if broken[0] and con.execute(f"SELECT count(*) FROM tickets WHERE id IN {sql_list(ticket_ids)} "
                                     "AND recipient = 'u-boom'").fetchone()[0]:
            raise ValueError("a rule with a bug")

    desk = Desk(store, triggers)
    users = [f"u{i:02d}" for i in range(20)]
    users[7] = "u-boom"
    deliveries = [Delivery([msg(user=u, message_id=f"m-{u}", text=f"from {u}")], "whatsapp", b"{}") for u in users]
    gate = threading.Event()
    held = store.submit(lambda con: gate.wait(30))  # so that the twenty are processed as one batch

    async def receive() -> list[int]:
        return [await desk.receive(d) for d in deliveries]
    ids = asyncio.run(receive())
    assert ids == sorted(ids)
    gate.set()
    held.result(30)
    rows = sql(store, "SELECT recipient FROM tickets ORDER BY id")
    assert [r for (r,) in rows] == [u for u in users if u != "u-boom"]  # in log order, none lost
    [letter] = asyncio.run(desk.dead_letters())
    assert letter["error"] == "ValueError: a rule with a bug" and letter["item"]["user_id"] == "u-boom"
    assert store.log.backlog == 0

    broken[0] = False  # the fix
    retried = asyncio.run(desk.retry_dead_letters())
    assert (retried["resolved"], retried["still_dead"]) == (1, 0)
    assert sql(store, "SELECT recipient FROM tickets ORDER BY id DESC LIMIT 1") == [("u-boom",)]
    assert asyncio.run(desk.dead_letters()) == []
    [resolved] = asyncio.run(desk.dead_letters(resolved=True))
    assert resolved["resolved_at"] is not None and resolved["attempts"] == 2


def test_two_new_ids_naming_the_same_phone_in_one_round_are_both_stored_and_none_is_dead_lettered(
        store: Store) -> None:
    """Two webhooks processed as one round whose senders (WhatsApp business-scoped ids) both name the same phone:
    both messages are stored, on the one customer's ticket, as if they had come one round each."""
    desk = Desk(store)
    deliveries = [Delivery([replace(msg(user=u, message_id=f"m-{u}", text=f"from {u}", at=later(n), name="Ana"),
                                    aliases=(CUSTOMER,))], "whatsapp", b"{}")
                  for n, u in enumerate(["US.1111", "US.2222"])]
    gate = threading.Event()
    held = store.submit(lambda con: gate.wait(30))  # so that the two are processed as one round

    async def receive() -> list[int]:
        return [await desk.receive(d) for d in deliveries]
    asyncio.run(receive())
    gate.set()
    held.result(30)
    assert asyncio.run(desk.dead_letters()) == [] and store.log.backlog == 0
    assert sql(store, "SELECT t.recipient, t.end_user_messages, list(c.body ORDER BY c.id) FROM tickets t "
                      "JOIN comments c ON c.ticket_id = t.id GROUP BY ALL") == [("US.2222", 2, ["from US.1111",
                                                                                       "from US.2222"])]
    assert sql(store, "SELECT platform_user_id FROM identities ORDER BY ALL") == [(CUSTOMER,), ("US.1111",),
                                                                                  ("US.2222",)]


def test_a_retry_that_fails_again_keeps_the_dead_letter_with_its_new_error(store: Store) -> None:
    def triggers(con: Any, ticket_ids: list[int], update_type: str, actor: Actor,
                 comment_is_public: bool | None = None) -> None:
        raise RuntimeError("still broken")

    desk = Desk(store, triggers)
    result = desk.ingest_sync(Delivery([msg(message_id="m1")], "whatsapp", b"{}"))
    assert (result.stored, result.dead_letters) == (0, 1)
    retried = asyncio.run(desk.retry_dead_letters())
    assert (retried["resolved"], retried["still_dead"]) == (0, 1)
    [letter] = asyncio.run(desk.dead_letters())
    assert letter["attempts"] == 2 and letter["error"] == "RuntimeError: still broken"
    assert sql(store, "SELECT count(*) FROM tickets") == [(0,)]


def test_what_was_logged_and_not_processed_before_a_crash_is_processed_at_start_up_once(tmp_path: Path) -> None:
    path = tmp_path / "crash.duckdb"
    first = open_store(path)

    async def log_only() -> None:  # acknowledged: in the log, and nobody processed it yet
        for i in range(5):
            delivery = Delivery([msg(user=f"u{i}", message_id=f"m{i}")], "whatsapp", b'{"raw": 1}')
            await first.aappend(Append(entry_of(delivery)))
    asyncio.run(log_only())
    first.close()  # the process stops before the tickets were built (kill -9 is tested in test_resilience)

    with open_store(path) as second:
        assert sql(second, "SELECT count(*) FROM tickets") == [(0,)]
        Desk(second).take_log()  # the service's desk, at start-up
        assert sql(second, "SELECT count(*) FROM tickets") == [(5,)]
        assert sql(second, "SELECT count(*) FROM inbox") == [(5,)]  # each raw body kept, once
    with open_store(path) as third:
        Desk(third).take_log()
        assert sql(third, "SELECT count(*), count(DISTINCT platform_message_id) FROM comments") == [(5, 5)]


def test_ingest_waits_for_its_messages_and_a_line_that_cannot_be_stored_is_a_dead_letter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SOCIALDESK_DB", str(tmp_path / "cli.duckdb"))
    monkeypatch.chdir(tmp_path)
    line = {"channel": "whatsapp", "account": "PN1", "user_id": "33612345678", "sent_at": "2026-11-24T09:00:00Z"}
    (tmp_path / "in.jsonl").write_text(json.dumps({**line, "message_id": "m1", "text": "Bonjour"}) + "\n" +
                                       json.dumps({**line, "message_id": "m2", "text": "\ud83d"}) + "\n")
    assert main(["ingest", "in.jsonl", "--json"]) == 2  # not complete success
    out, err = capsys.readouterr()
    assert (json.loads(out)["stored"], json.loads(out)["dead_letters"]) == (1, 1)
    assert "socialdesk dead-letters" in err
    assert main(["dead-letters"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("1 dead letter(s); 0 webhook(s) waiting") and "surrogates not allowed" in out
    assert " m2 " in out
    assert main(["dead-letters", "retry", "1", "--json"]) == 2  # nothing was fixed: it stays
    assert json.loads(capsys.readouterr().out)["still_dead"] == 1


def test_the_demo_leaves_no_dead_letter_and_nothing_waiting(tmp_path: Path) -> None:
    env = {**os.environ, "PORT": "0"}
    env.pop("SOCIALDESK_DB", None)
    cli = [sys.executable, "-m", "socialdesk.cli"]
    assert subprocess.run([*cli, "demo", "--once"], cwd=tmp_path, env=env, capture_output=True,
                          timeout=120).returncode == 0
    out = subprocess.run([*cli, "dead-letters", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**env, "SOCIALDESK_DB": str(tmp_path / "data" / "demo.duckdb")})
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert (answer["count"], answer["log"]["waiting"]) == (0, 0)


def test_a_listener_hears_of_each_batch_that_became_tickets(store: Store) -> None:
    """How the Slack notifier can show a new ticket at once rather than at its next poll."""
    heard: list[int] = []
    store.log.subscribe(lambda: heard.append(sql(store, "SELECT count(*) FROM tickets", fresh=False)[0][0]))
    Desk(store).ingest_sync(Delivery([msg(message_id="m1")], "whatsapp", b"{}"))
    assert heard == [1]  # told after the commit: the ticket is there to read


def test_a_workers_batch_is_one_append_its_ids_in_order_and_a_failed_append_fails_each_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(tmp_path / "batch.duckdb")
    entries = [entry_of(Delivery([msg(user=f"u{i}", message_id=f"m{i}")], "whatsapp", b"{}")) for i in range(3)]
    ids = [i for i in asyncio.run(store.aappend_all([Append(e) for e in entries])) if isinstance(i, int)]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]
    assert sql(store, f"SELECT count(*) FROM inbox WHERE id IN {sql_list(ids)}") == [(3,)]

    def broken(con: Any, groups: list[list[Append]]) -> list[list[int]]:
        raise OSError("disk full")
    monkeypatch.setattr(store.log, "append", broken)
    failed = asyncio.run(store.aappend_all([Append(e) for e in entries]))
    assert [type(f) for f in failed] == [OSError] * 3  # each webhook of the batch is answered 503
    store.close()


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
def test_with_build_nice_a_burst_is_built_at_the_lower_priority_and_a_steady_flow_at_the_normal_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: acknowledgements take the CPU from building while a burst waits in the log; at a steady rate
    building keeps its priority, so tickets are not visible later than without the setting."""
    monkeypatch.setattr(warehouse.log, "MAX_ROUND", 20)
    monkeypatch.setattr(warehouse.store, "BURST_BACKLOG", 10)
    store = open_store(tmp_path / "burst.duckdb")
    store.build_behind_acknowledgements(10)
    entries = [entry_of(Delivery([msg(user=f"u{i}", message_id=f"m{i}")], "whatsapp", b"{}")) for i in range(30)]
    asyncio.run(store.aappend_all([Append(e) for e in entries]))  # acknowledged while nobody builds: a burst
    desk = Desk(store)
    rounds: list[tuple[int, int]] = []

    def building(con: Any, deliveries: list[Delivery]) -> list[Any]:
        rounds.append((len(deliveries), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        return desk._ingest_with_triggers(con, deliveries)
    store.log.adopt(building)
    assert sql(store, "SELECT count(*) FROM tickets") == [(30,)]  # the read waits for the log
    assert rounds == [(20, 10), (10, 0)]  # 30 waiting: a burst; then 10, not more than BURST_BACKLOG
    store.close()
