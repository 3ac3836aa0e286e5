"""`socialdesk demo`: the whole product on one machine with no accounts.

It starts local fakes of the channels' APIs, runs the real service on a local DuckDB file with demo
accounts for all five channels, and drives realistic signed traffic through the real webhook
endpoints. Agents reply through the real outbox (one reply meets a closed WhatsApp window), receipts
come back, and the notifier is printed as an agent sees it. Then it keeps serving until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from socialdesk.cli import render
from socialdesk.config import Config
from socialdesk.fakes import slack_api
from socialdesk.fakes.meta_api import whatsapp_status_payload
from socialdesk.sandbox import ACCOUNTS, AGENT, AGENT_NAME, TRIAGE_CHANNEL, WHATSAPP_LYON, WHATSAPP_PARIS, Sandbox
from socialdesk.service import DESK, STORE, build_app
from warehouse import owner
from warehouse.desk import Desk

# (channel, account, user id, name, minutes ago, text): a morning at a small online shop.
CONVERSATIONS: list[tuple[str, str, str, str, int, str]] = [
    ("whatsapp", WHATSAPP_PARIS, "33612345678", "Amélie Dupont", 95, "Bonjour, ma commande A-1042 n'est pas arrivée"),
    ("whatsapp", WHATSAPP_PARIS, "33612345678", "Amélie Dupont", 93, "Le suivi indique livrée hier ?"),
    ("whatsapp", WHATSAPP_LYON, "33798765432", "Louis Martin", 80, "Do you have the blue jacket in size M?"),
    ("whatsapp", WHATSAPP_PARIS, "4915112345678", "Jonas Weber", 26 * 60, "Can I still change my delivery address?"),
    ("messenger", ACCOUNTS["messenger"][0], "1254459154682919", "Amélie D.", 70, "Hi! I also wrote on WhatsApp"),
    ("messenger", ACCOUNTS["messenger"][0], "2093847561029384", "Priya Nair", 55, "Is the store open on Sunday?"),
    ("line", ACCOUNTS["line"][0], "U206d25c2ea6bd87c17655609a1c37cb8", "Sato Yui", 50, "注文をキャンセルできますか？"),
    ("line", ACCOUNTS["line"][0], "U8b3c2f1e0d9a8b7c6d5e4f3a2b1c0d9e", "Kenji Ito", 45, "Thanks for the delivery!"),
    ("wechat", ACCOUNTS["wechat"][0], "o9AgO5Kd5ggOC-bXrbNODIiE3bGY", "Li Wei", 40, "请问可以开发票吗？"),
    ("x", ACCOUNTS["x"][0], "272953809", "Nicolas Pottier", 30, "My discount code DEMO10 doesn't work"),
    ("x", ACCOUNTS["x"][0], "272953809", "Nicolas Pottier", 29, "It says expired, but the email says today"),
    ("whatsapp", WHATSAPP_LYON, "447700900123", "Olivia Brown", 20, "Card 4111 1111 1111 1111 was charged twice"),
    ("messenger", ACCOUNTS["messenger"][0], "3847561029384756", "Diego Ruiz", 10, "Where can I find my invoice?"),
    ("wechat", ACCOUNTS["wechat"][0], "oX7pQ2rS4tU6vW8xY0zA1bC3dE5f", "Wang Fang", 5, "你好，包裹还没到"),
]


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
    async with aiohttp.ClientSession() as http:
        say(f"→ {len(CONVERSATIONS)} customer messages arrive on five channels (signed webhooks)")
        for n, (channel, account, user, name, minutes, text) in enumerate(CONVERSATIONS, 1):
            at = now - timedelta(minutes=minutes)
            body = sandbox.message(channel, account, user, text, f"demo-{channel}-{n}", at, name)
            req = sandbox.request(channel, account, body)
            async with http.post(base + req.path, data=req.body, headers=req.headers, params=req.query) as resp:
                say(f"  [{n:2}/{len(CONVERSATIONS)}] {channel:<9} {name:<16} → HTTP {resp.status}")
        # A platform retries a delivery: nothing changes.
        async with http.post(base + req.path, data=req.body, headers=req.headers, params=req.query) as resp:
            say(f"  a redelivered webhook → HTTP {resp.status}, stored once")

        agent = await desk.agent(AGENT, AGENT_NAME)
        by_user = await desk.read(lambda c: dict(c.execute(
            "SELECT recipient, max(id) FROM tickets GROUP BY recipient").fetchall()))
        tickets = {name: by_user[user] for _, _, user, name, _, _ in CONVERSATIONS}
        say("→ the agent claims and answers")
        await desk.claim(tickets["Amélie Dupont"], agent)
        await desk.claim(tickets["Louis Martin"], agent)
        answered = [
            await desk.reply(tickets["Amélie Dupont"], agent, "Bonjour Amélie, je vérifie avec le transporteur.",
                             status="pending"),
            await desk.reply(tickets["Sato Yui"], agent, "キャンセルを承りました。"),
            await desk.reply(tickets["Li Wei"], agent, "可以，我们今天会把发票发到您的邮箱。"),
            await desk.reply(tickets["Nicolas Pottier"], agent, "Sorry! Here is a new code: DEMO15"),
            await desk.reply(tickets["Jonas Weber"], agent, "Hello Jonas, yes you can!"),  # 26 hours later: refused
        ]
        replies = [r for r in answered if r is not None]  # None only for a once-key acted on already
        for r in replies:
            say(f"  reply on ticket #{r['ticket_id']}: {r['state']}" + (f" ({r['reason']})" if r["reason"] else ""))
        sent = await _wait_sent(desk, [r["outbox_id"] for r in replies if r["state"] == "queued"])
        for platform_id, channel, account, recipient in sent:
            if channel == "whatsapp":
                for status in ("delivered", "read"):
                    body = whatsapp_status_payload(account, recipient, platform_id, status)
                    req = sandbox.request("whatsapp", account, body)
                    async with http.post(base + req.path, data=req.body, headers=req.headers):
                        pass
        say("  WhatsApp delivery and read receipts came back for the replies sent there (B2)")
        users = await desk.read(lambda c: dict(c.execute(
            "SELECT i.channel, i.user_id FROM identities i WHERE i.platform_user_id IN (?, ?)",
            ["33612345678", "1254459154682919"]).fetchall()))
        await desk.merge(users["messenger"], users["whatsapp"], _demo_actor())
        say("  merged Amélie's Messenger account into her WhatsApp account (R5)")
        await _slack(http, base, sandbox)
    return {"replies": replies}


async def _slack(http: aiohttp.ClientSession, base: str, sandbox: Sandbox) -> None:
    """The agent's side, through signed Slack requests to /slack/events, and what the app posted to Slack."""
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
        if len(cards) >= 12 and sandbox.slack.called("views.publish"):
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


async def _wait_sent(desk: Desk, outbox_ids: list[int], timeout: float = 15.0) -> list[tuple]:
    ids = ",".join(str(i) for i in outbox_ids) or "NULL"
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await desk.read(lambda c: c.execute(
            f"SELECT platform_message_id, channel, account, recipient FROM outbox WHERE id IN ({ids}) "
            f"AND state <> 'queued'"
        ).fetchall())
        if len(rows) == len(outbox_ids) or asyncio.get_running_loop().time() > deadline:
            say(f"  the outbox delivered {len(rows)} of {len(outbox_ids)} replies through the channels' APIs")
            return [r for r in rows if r[0]]
        await asyncio.sleep(0.1)


async def run(cfg: Config, *, once: bool = False) -> int:
    if not cfg.store.path or cfg.store.path == Config().store.path:
        cfg.store.path = "data/demo.duckdb"
    fresh = not Path(cfg.store.path).exists()
    say("SocialDesk demo: starting fake WhatsApp, Messenger, LINE, WeChat and X APIs on loopback")
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
