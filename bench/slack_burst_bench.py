"""Slack burst: 200 new WhatsApp tickets in 10 seconds, and the fake of Slack enforcing Slack's real
limits (about one message a second per channel with a short burst, each method's tier per minute).

Every card and every customer message must reach the triage channel, in order per ticket (a card
before its thread, the thread in the order the customer wrote). A fifth of the customers write
again one to three seconds later (twice), so messages wait for threads whose card has not gone yet.
Reported: how long after the first webhook the last message reached Slack, the latency of each
message from its webhook to Slack (p50, p95, max), how many posts and updates that took, and how
many 429s the app caused (it paces itself, so: few or none). The service runs as its own process,
the fake Slack in this one, as in production. Figures are measured, never asserted.

`python -m bench slack` or `python -m bench.slack_burst_bench [TICKETS] [SECONDS]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import free_port, start, table, toml, wait_up, write
from socialdesk.fakes import slack_api
from socialdesk.sandbox import ACCOUNTS, AGENT, BUSIEST, TRIAGE_CHANNEL, Sandbox

FOLLOW_UPS = 5  # one customer in FOLLOW_UPS writes twice more


def _texts(n: int, tickets: int) -> list[str]:
    return [f"burst-{n:04d}-{k} Bonjour, ma commande n'est pas arrivée" for k in range(3 if n % FOLLOW_UPS == 0
                                                                                 else 1)]


async def _send(http: aiohttp.ClientSession, base: str, sandbox: Sandbox, n: int, k: int, text: str,
                sent: dict[str, float]) -> None:
    body = sandbox.message(BUSIEST, ACCOUNTS[BUSIEST][0], f"3361{n:07d}", text, f"burst-{n}-{k}",
                           datetime.now(UTC), f"Client {n}")
    req = sandbox.request(BUSIEST, ACCOUNTS[BUSIEST][0], body)
    sent[text] = time.monotonic()
    async with http.post(base + req.path, data=req.body, headers=req.headers, params=req.query) as resp:
        if resp.status != 200:
            raise RuntimeError(f"webhook answered {resp.status}")


def _seen(api: slack_api.SlackAPI) -> dict[str, tuple[str, float, str]]:
    """Each burst text in Slack: (its card's ts, the position of its message, where)."""
    out: dict[str, tuple[str, float, str]] = {}
    for card in api.in_channel(TRIAGE_CHANNEL):
        shown = [(0.0, "card", str(card.blocks))] + [(float(m.ts), "thread", str(m.blocks))
                                                      for m in api.thread(TRIAGE_CHANNEL, card.ts)]
        for position, where, text in shown:
            start_at = 0
            while (i := text.find("burst-", start_at)) != -1:
                key = text[i:i + len("burst-0000-0")]
                out.setdefault(key, (card.ts, position, where))
                start_at = i + 1
    return out


async def burst(tickets: int, seconds: float, work: Path) -> dict[str, Any]:
    sandbox = await Sandbox().start()
    sandbox.slack.add_channel(TRIAGE_CHANNEL, "social-triage", members=[AGENT])
    config = work / "slack.toml"
    config.write_text(toml(sandbox.channels, f'[slack]\nbot_token = "{slack_api.BOT_TOKEN}"\n'
                                             f'signing_secret = "{slack_api.SIGNING_SECRET}"\n'
                                             f'api_url = "{sandbox.slack.api_url}"\nteam_id = "{slack_api.TEAM_ID}"\n'
                                             f'triage_channel = "{TRIAGE_CHANNEL}"\nagents = ["{AGENT}"]\n'))
    port = free_port()
    service = start(["-m", "socialdesk.cli", "serve"], {"PORT": str(port), "SOCIALDESK_CONFIG": str(config),
                                                        "SOCIALDESK_DB": str(work / "slack.duckdb")}, work)
    try:
        await asyncio.to_thread(wait_up, port, service, 120)
        base = f"http://127.0.0.1:{port}"
        sent: dict[str, float] = {}
        expected = {f"burst-{n:04d}-{k}": t for n in range(tickets) for k, t in enumerate(_texts(n, tickets))}
        first_at: dict[str, float] = {}
        async with aiohttp.ClientSession() as http:
            t0 = time.monotonic()
            pending: list[asyncio.Task[None]] = []
            for n in range(tickets):  # evenly over `seconds`
                await asyncio.sleep(max(0.0, t0 + n * seconds / tickets - time.monotonic()))
                pending.append(asyncio.create_task(_send(http, base, sandbox, n, 0, _texts(n, tickets)[0], sent)))
                for k, text in enumerate(_texts(n, tickets)[1:], 1):
                    async def later(n: int = n, k: int = k, text: str = text) -> None:
                        await asyncio.sleep(k * 1.0)
                        await _send(http, base, sandbox, n, k, text, sent)
                    pending.append(asyncio.create_task(later()))
            await asyncio.gather(*pending)
            sent_done = time.monotonic() - t0
            deadline = time.monotonic() + 60 + 3 * len(expected)
            while time.monotonic() < deadline:
                now = time.monotonic()
                for key in _seen(sandbox.slack):
                    first_at.setdefault(key, now)
                if len(first_at) >= len(expected):
                    break
                await asyncio.sleep(0.25)
        last = max(first_at.values(), default=t0) - t0
        by_text = {expected[k]: v for k, v in first_at.items() if k in expected}
        latencies = sorted(by_text[t] - sent[t] for t in by_text if t in sent)
        seen = _seen(sandbox.slack)
        in_order = 0
        for n in range(tickets):
            keys = [f"burst-{n:04d}-{k}" for k in range(len(_texts(n, tickets)))]
            found = [seen.get(k) for k in keys]
            places = [p for p in found if p is not None]
            if len(places) == len(keys) and len({p[0] for p in places}) == 1 and \
                    [p[1] for p in places] == sorted(p[1] for p in places):
                in_order += 1
        api = sandbox.slack
        calls: dict[str, int] = {}
        for c in api.calls:
            calls[c.method] = calls.get(c.method, 0) + 1
        limited: dict[str, int] = {}
        for r in api.rate_limited:
            limited[r.method] = limited.get(r.method, 0) + 1
        return {
            "tickets": tickets, "customer_messages": len(expected), "webhooks_sent_in_s": round(sent_done, 1),
            "reached_slack": len(first_at), "tickets_in_order": in_order,
            "cards": len(api.in_channel(TRIAGE_CHANNEL)),
            "thread_posts": sum(len(api.thread(TRIAGE_CHANNEL, c.ts)) for c in api.in_channel(TRIAGE_CHANNEL)),
            "last_message_after_s": round(last, 1),
            "latency_s": {"p50": round(statistics.median(latencies), 1) if latencies else None,
                          "p95": round(latencies[int(len(latencies) * 0.95) - 1], 1) if latencies else None,
                          "max": round(latencies[-1], 1) if latencies else None},
            "calls": calls, "app_caused_429s": len(api.rate_limited), "429s_by_method": limited,
            "other_refusals": [f"{r.method} {r.error}" for r in api.refusals if r.error != "ratelimited"],
        }
    finally:
        service.terminate()
        await asyncio.to_thread(service.wait, 30)
        await sandbox.stop()


def main(argv: list[str]) -> None:
    tickets = int(argv[0]) if argv else 200
    seconds = float(argv[1]) if len(argv) > 1 else 10.0
    work = Path(tempfile.mkdtemp(prefix="socialdesk-slack-"))
    print(f"{tickets} new tickets over {seconds:g} s, Slack's limits enforced (takes a few minutes)...", flush=True)
    result = asyncio.run(burst(tickets, seconds, work))
    rows = [("tickets / customer messages", f"{result['tickets']} / {result['customer_messages']}"),
            ("reached Slack", f"{result['reached_slack']} of {result['customer_messages']}"),
            ("tickets whose card and thread are in order", f"{result['tickets_in_order']} of {result['tickets']}"),
            ("cards / thread posts", f"{result['cards']} / {result['thread_posts']}"),
            ("last message in Slack after", f"{result['last_message_after_s']} s"),
            ("webhook -> Slack p50 / p95 / max", "{p50} / {p95} / {max} s".format(**result["latency_s"])),
            ("chat.postMessage / chat.update / views.publish",
             f"{result['calls'].get('chat.postMessage', 0)} / {result['calls'].get('chat.update', 0)} / "
             f"{result['calls'].get('views.publish', 0)}"),
            ("429s the app caused", f"{result['app_caused_429s']} {result['429s_by_method'] or ''}".strip()),
            ("other refusals", str(len(result["other_refusals"])))]
    print(table(rows, ("slack burst", "measured")), flush=True)
    print(f"results: {write('slack', result)}")


if __name__ == "__main__":
    main(sys.argv[1:])
