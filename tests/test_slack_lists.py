"""Cards and lists an agent can work from (issue 11): clickable search results, status and channel told
apart, local times, escaped fallback texts, a private triage channel, merge suggestions once each, and
`/slack/events` answering junk with a 4xx, never a 500.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import os
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.blocks.common import RED_DOT, STATUS_COLOURS, STATUS_ICONS
from socialdesk.fakes import slack_api as fake
from tests import test_slack_harness as harness
from tests.conftest import msg
from tests.test_slack_harness import AGENT, GENERAL, TRIAGE, World, text_of
from warehouse import channels

world = harness.world  # the fixture
NOW = datetime(2026, 11, 24, 10, 0)


async def test_search_results_open_the_ticket(world: World) -> None:
    """R25: the user found by phone lists all their tickets as buttons; one click opens a ticket."""
    first = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    second = (await world.ingest(msg(account="PN2", text="Other number"))).created_tickets[0]
    await world.command(AGENT, "search +33 6 12 34 56 78", channel_id=GENERAL)
    answer = world.response()
    buttons = [e for b in answer["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert {(e["value"], e["action_id"]) for e in buttons} >= {(str(first), f"open_ticket-{first}")}
    await world.click(AGENT, f"open_ticket-{first}", str(first), channel=GENERAL, message_ts="1.000")
    assert world.last("views.open")["view"]["title"]["text"] == f"Ticket #{first}"
    assert second != first


def test_status_icons_and_channel_icons_share_no_symbol_and_no_colour() -> None:
    """Red marks only R15's "new unassigned tickets wait"; status icons are coloured circles, channel icons
    monochrome letters (no emoji colour at all)."""
    status, channel = set(STATUS_ICONS.values()), {c.icon for c in channels.every()}
    assert not status & channel and len(status) == 6 and len(channel) == len(channels.every())
    assert RED_DOT not in status | channel and "red" not in STATUS_COLOURS.values()
    assert len(set(STATUS_COLOURS.values())) == 6
    for icon in channel:  # Enclosed Alphanumeric Supplement letters: text presentation, the text's colour
        assert len(icon) == 1 and "LATIN CAPITAL LETTER" in unicodedata.name(icon)
    for icon in status:
        assert "CIRCLE" in unicodedata.name(icon)


async def test_red_appears_only_while_new_unassigned_tickets_wait(world: World) -> None:
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    await world.event({"type": "app_home_opened", "user": AGENT, "channel": "D0A", "tab": "home"})
    assert RED_DOT in text_of(world.home())
    await world.click(AGENT, "claim", str(tid), channel=TRIAGE)
    await world.notify()
    assert RED_DOT not in text_of(world.home())
    assert all(RED_DOT not in text_of(m.blocks) for m in world.api.messages.values())


async def test_times_are_shown_in_each_agents_time_zone(world: World, frozen: Any) -> None:
    tid = (await world.ingest(msg(text="Hi", at=NOW - timedelta(minutes=5)))).created_tickets[0]
    await world.click(AGENT, "open_ticket", str(tid))
    sent = int((NOW - timedelta(minutes=5)).replace(tzinfo=UTC).timestamp())
    assert f"<!date^{sent}^{{date_short_pretty}} {{time}}|2026-11-24 09:55 UTC>" in text_of(world.last_modal())
    await world.click(AGENT, "events", str(tid), channel=TRIAGE)
    assert "<!date^" in text_of(world.last_modal())


async def test_what_a_customer_writes_pings_no_one_and_forges_no_link(world: World) -> None:
    """Blocks and the fallback text alike: a customer named <!here> writing <!channel> <https://evil|bank>."""
    tid = (await world.ingest(msg(text="<!channel> log in at <https://evil.example|your bank> &", name="<!here>",
                                  phone="+33612345678"))).created_tickets[0]
    await world.ingest(msg(text="<!everyone> <@U0AGENT1> <#C0TRIAGE>", name="<!here>", phone="+33612345678"))
    await world.event({"type": "app_home_opened", "user": AGENT, "channel": "D0A", "tab": "home"})
    await world.click(AGENT, "home_tab_unassigned", "unassigned")
    await world.command(AGENT, f"ticket {tid}")
    await world.command(AGENT, "search +33612345678")
    found = world.api.posted_tokens()
    assert found, "the app's own dates and mentions are there"
    forged = [t for t in found if t.startswith(("!here", "!channel", "!everyone", "@U0AGENT1", "#C0TRIAGE"))
              or "evil" in t]
    assert forged == []
    card = world.api.in_channel(TRIAGE)[0]
    assert "&lt;!here&gt;" in card.text and "<!" not in card.text


async def test_a_private_triage_channel_works(world: World) -> None:
    """A private channel (message.groups): the card goes there and agents' thread replies become notes."""
    world.api.channels[TRIAGE].private = True
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    channel, ts = await world.slack_message(tid)
    await world.event({"type": "message", "channel": channel, "channel_type": "group", "user": AGENT,
                       "text": "Looking into it", "ts": "1800000000.000200", "thread_ts": ts})
    notes = [c["body"] for c in (await world.desk.ticket(tid))["comments"] if not c["public"]]
    assert notes == ["Looking into it"]


async def test_a_private_triage_channel_without_the_app_keeps_cards_waiting(world: World) -> None:
    """Slack answers channel_not_found for a private channel the app is not in: the cards wait for it."""
    world.api.expect("channel_not_found", times=None)
    world.api.channels[TRIAGE].private = True
    world.api.channels[TRIAGE].bot = False
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    world.api.channels[TRIAGE].bot = True
    world.clock.advance(60)
    await world.notify()
    assert await world.slack_message(tid)


async def test_merge_lists_each_account_once(world: World) -> None:
    """B5: accounts that share the phone are suggested; a search finding them again lists them no twice."""
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    await world.ingest(msg(account="PN2", text="Other number"))
    await world.ingest(msg(channel="messenger", account="PAGE1", user="1254459154682919", text="Hello",
                           name="Amélie D.", phone="+33612345678"))
    await world.click(AGENT, "merge", str(tid), channel=TRIAGE)
    merge = world.last_modal()
    await world.click(AGENT, "merge_search", view=merge, action={"type": "plain_text_input", "value": "+33612345678"})
    picks = [b["accessory"]["value"] for b in world.last_modal()["blocks"]
             if b.get("accessory", {}).get("action_id") == "merge_pick"]
    assert len(picks) == 2 and len(set(picks)) == 2


# -- /slack/events and junk --------------------------------------------------------------------------

def signed(body: bytes, ts: str) -> dict[str, str]:
    digest = hmac.new(fake.SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


# What a header can carry: printable ASCII and Latin-1 (the client refuses control characters).
header_text = st.text(alphabet="".join(map(chr, [*range(32, 127), *range(160, 256)])), max_size=20)
stamps = st.one_of(header_text, st.integers(min_value=-10**20, max_value=10**20).map(str),
                   st.just("١٧٠٠٠٠٠٠٠٠"), st.just(""), st.just(str(int(time.time()) - 10_000)))
bodies = st.one_of(st.binary(max_size=512), st.text(max_size=200).map(str.encode),
                   st.just("é".encode("latin-1")), st.just(b"payload=%7B"), st.just(b"payload=%FF%FE"),
                   st.just(b"[]"), st.just(b"{"), st.just(b'{"type": "event_callback", "event": 5}'),
                   st.just(b"\xff\xfe{\x00}"))
encodings = st.sampled_from([None, "gzip", "deflate", "br", "identity", "x-junk", "gzip, gzip"])
types = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data",
                         ""])


@settings(max_examples=int(os.environ.get("SOCIALDESK_SLACK_FUZZ", "300")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(body=bodies, stamp=stamps, encoding=encodings, ctype=types, sign_it=st.booleans(), zip_it=st.booleans())
async def test_junk_gets_a_4xx_never_a_500(world: World, body: bytes, stamp: str, encoding: str | None, ctype: str,
                                          sign_it: bool, zip_it: bool) -> None:
    """Non-UTF-8 bodies, bad timestamp headers, bad Content-Encoding, signed or not: a 4xx, never a 500."""
    if sign_it:
        stamp = str(int(time.time()))
    headers = {**({"Content-Type": ctype} if ctype else {}), **signed(body, stamp)}
    data = body
    if encoding:
        headers["Content-Encoding"] = encoding
        if zip_it and encoding == "gzip":
            data = gzip.compress(body)
    resp = await world.client.post("/slack/events", data=data, headers=headers)
    assert resp.status < 500 and (sign_it or resp.status >= 400), resp.status
