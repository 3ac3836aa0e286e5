"""`socialdesk demo`: the whole product on one machine with no accounts.

It starts local fakes of the channels' APIs, runs the real service on a local DuckDB file with demo
accounts for every channel, and drives realistic signed traffic through the real webhook endpoints
(each channel's demo messages come from its simulation). Agents reply through the real outbox (one
reply meets a closed messaging window), receipts come back where the channel sends them, and the
notifier is printed as an agent sees it. Then it keeps serving until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from socialdesk.cli import render
from socialdesk.config import Config
from socialdesk.fakes import slack_api
from socialdesk.sandbox import AGENT, AGENT_NAME, SIMULATIONS, TRIAGE_CHANNEL, Sandbox
from socialdesk.service import DESK, STORE, build_app
from warehouse import channels, outbox, owner, queries
from warehouse.desk import Desk


@dataclass(frozen=True, slots=True)
class Message:
    """One customer message of the demo: a morning at a small online shop, on every channel."""

    channel: str
    account: str
    user: str
    name: str
    minutes_ago: int
    text: str
    claim: bool
    reply: str | None
    status: str | None
    person: str


def conversations() -> list[Message]:
    """Every channel's demo messages (its simulation's), channel by channel in the registry's order: the
    first channel's first customer has ticket 1."""
    return [Message(channel, s.account_ids[c.account], c.user, c.name, c.minutes_ago, c.text, c.claim, c.reply,
                    c.status, c.person)
            for channel, s in SIMULATIONS.items() for c in s.demo]


def _free_port(preferred: int) -> int:
    """`preferred` if it is free, else any free port (0 asks for any)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text: str) -> None:
    print(text, flush=True)


async def drive(base: str, sandbox: Sandbox, desk: Desk) -> dict[str, Any]:
    """The demo's traffic, through the real endpoints; returns what happened for the summary."""
    now = datetime.now(UTC)
    messages = conversations()
    async with aiohttp.ClientSession() as http:
        say(f"→ {len(messages)} customer messages arrive on {len(SIMULATIONS)} channels (signed webhooks)")
        for n, m in enumerate(messages, 1):
            body = sandbox.message(m.channel, m.account, m.user, m.text, f"demo-{m.channel}-{n}",
                                   now - timedelta(minutes=m.minutes_ago), m.name)
            req = sandbox.request(m.channel, m.account, body)
            async with http.post(base + req.path, data=req.body, headers=req.headers, params=req.query) as resp:
                say(f"  [{n:2}/{len(messages)}] {m.channel:<9} {m.name:<16} → HTTP {resp.status}")
        # A platform retries a delivery: nothing changes.
        async with http.post(base + req.path, data=req.body, headers=req.headers, params=req.query) as resp:
            say(f"  a redelivered webhook → HTTP {resp.status}, stored once")

        agent = await desk.agent(AGENT, AGENT_NAME)
        say("→ the agent claims and answers (one reply meets a closed messaging window)")
        for m in messages:
            if m.claim and (ticket := await _ticket(desk, m)) is not None:
                await desk.claim(ticket, agent)
        replies = []
        for m in messages:
            if m.reply is None or (ticket := await _ticket(desk, m)) is None:
                continue
            result = await desk.reply(ticket, agent, m.reply, status=m.status)
            if result is not None:  # None only for a once-key acted on already
                replies.append(result)
                say(f"  reply on ticket #{result['ticket_id']} ({channels.label(m.channel)}): {result['state']}"
                    + (f" ({result['reason']})" if result["reason"] else ""))
        sent = await _wait_sent(desk, [r["outbox_id"] for r in replies if r["state"] == "queued"])
        receipts = 0
        for reply in sent:
            for status in ("delivered", "read"):
                receipt = sandbox.receipt(reply["channel"], reply["account"], reply["recipient"],
                                          reply["platform_message_id"], status)
                if receipt is not None:
                    req = sandbox.request(reply["channel"], reply["account"], receipt)
                    async with http.post(base + req.path, data=req.body, headers=req.headers, params=req.query):
                        receipts += 1
        say(f"  {receipts} delivery and read receipts came back from the channels that send them (B2)")
        await _merge_people(desk, messages)
        await _slack(http, base, sandbox, len({(m.channel, m.account, m.user) for m in messages}))
    return {"replies": replies}


async def _ticket(desk: Desk, m: Message) -> int | None:
    """The ticket the message is on (its sender's newest on that account)."""
    return await desk.read(functools.partial(queries.latest_ticket, channel=m.channel, account=m.account,
                                             platform_user_id=m.user))


async def _merge_people(desk: Desk, messages: list[Message]) -> None:
    """A customer who wrote on two channels (the demo says who, `person`) is one person: the agent merges
    the later account into the first (R5)."""
    first: dict[str, Message] = {}
    for m in messages:
        if not m.person:
            continue
        earlier = first.setdefault(m.person, m)
        if earlier.channel != m.channel:
            source, target = [await desk.read(functools.partial(
                queries.user_of_identity, channel=x.channel, account=x.account, platform_user_id=x.user))
                for x in (m, earlier)]
            await desk.merge(source, target, _demo_actor())
            say(f"  merged {m.name}'s {channels.label(m.channel)} account into their "
                f"{channels.label(earlier.channel)} account (R5)")


async def _slack(http: aiohttp.ClientSession, base: str, sandbox: Sandbox, tickets: int) -> None:
    """The agent's side, through signed Slack requests to /slack/events, and what the app posted to Slack
    (a card for each of the `tickets`)."""
    say("→ in Slack (a local fake of Slack's Web API)")
    body, ctype = slack_api.command_body("/social", "unassigned", AGENT, response_url=sandbox.slack.response_url())
    async with http.post(base + "/slack/events", data=body, headers={"Content-Type": ctype,
                                                                      **slack_api.sign(body)}) as resp:
        say(f"  /social unassigned → HTTP {resp.status}")
    event, ctype = slack_api.event_body({"type": "app_home_opened", "user": AGENT, "tab": "home",
                                         "channel": "D0DEMO", "event_ts": "1.0"})
    async with http.post(base + "/slack/events", data=event, headers={"Content-Type": ctype,
                                                                       **slack_api.sign(event)}) as resp:
        say(f"  {AGENT_NAME} opens the App Home → HTTP {resp.status}")
    # Slack takes about one message a second per channel: the app posts the cards at that pace.
    deadline = asyncio.get_running_loop().time() + 40
    while asyncio.get_running_loop().time() < deadline:
        cards = [c for c in sandbox.slack.called("chat.postMessage")
                 if c.get("channel") == TRIAGE_CHANNEL and not c.get("thread_ts")]
        if len(cards) >= tickets and sandbox.slack.called("views.publish"):
            break
        await asyncio.sleep(0.2)
    threads = [c for c in sandbox.slack.called("chat.postMessage") if c.get("thread_ts")]
    say(f"  {len(cards)} ticket cards in the triage channel, {len(threads)} messages in their threads, "
        f"{len(sandbox.slack.called('chat.update'))} card updates, "
        f"App Home published {len(sandbox.slack.called('views.publish'))} time(s)")
    refused = sandbox.slack.unexpected()  # the fake refuses what Slack would: nothing, we hope
    say("  Slack refused nothing" if not refused else
        "  Slack refused: " + "; ".join(f"{r.method} {r.error} {r.messages}" for r in refused))


def _demo_actor() -> Any:
    from warehouse.tickets import Actor
    return Actor("system", "demo")


async def _wait_sent(desk: Desk, outbox_ids: list[int], timeout: float = 15.0) -> list[dict[str, Any]]:
    """The replies once the outbox is done with them, those the platform took."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await desk.read(lambda c: outbox.finished(c, outbox_ids))
        if len(rows) == len(outbox_ids) or asyncio.get_running_loop().time() > deadline:
            say(f"  the outbox delivered {len(rows)} of {len(outbox_ids)} replies through the channels' APIs")
            return [r for r in rows if r["platform_message_id"]]
        await asyncio.sleep(0.1)


async def run(cfg: Config, *, once: bool = False) -> int:
    if not cfg.store.path or cfg.store.path == Config().store.path:
        cfg.store.path = "data/demo.duckdb"
    fresh = not Path(cfg.store.path).exists()
    say(f"SocialDesk demo: starting fake {', '.join(channels.label(c) for c in SIMULATIONS)} APIs on loopback")
    sandbox = await Sandbox().start()
    # The strict fake of Slack knows only the channels it is told of: the app is in the triage channel.
    sandbox.slack.add_channel(TRIAGE_CHANNEL, "social-triage", members=[AGENT])
    sandbox.configure(cfg, slack=True)
    cfg.server.retry_base_seconds = 0.5
    port = _free_port(cfg.server.port)
    app = build_app(cfg)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # CLI commands and notebooks reach the demo's store through it, as with `socialdesk serve`.
    admin = owner.admin_socket(app[STORE].path)
    admin.unlink(missing_ok=True)
    await web.UnixSite(runner, str(admin)).start()
    base = f"http://127.0.0.1:{port}"
    say(f"The service is up at {base} (store {app[STORE].path}; /healthz, /metrics, /webhooks/...)")
    desk = app[DESK]
    try:
        if fresh:
            await drive(base, sandbox, desk)
        else:
            say("(the demo store already has its data; delete it to replay the scenario)")
        for tab in ("assigned", "unassigned"):
            say("")
            say(render("notifier", await desk.notifier(AGENT, tab)))
        say("")
        say(f"Look closer:  SOCIALDESK_DB={cfg.store.path} .venv/bin/socialdesk ticket 1")
        say("Reports:      .venv/bin/jupyter lab notebooks/   (they read the live store)")
        if once:
            return 0
        say("Serving until Ctrl-C.")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await runner.shutdown()
        await runner.cleanup()
        await sandbox.stop()


def main(cfg: Config, once: bool = False) -> int:
    try:
        return asyncio.run(run(cfg, once=once))
    except KeyboardInterrupt:
        return 0
    finally:
        sys.stdout.flush()
