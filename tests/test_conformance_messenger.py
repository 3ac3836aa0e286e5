"""The Messenger files of the conformance corpus, through the real route, twice (issue 12).

Every file under `../shared/conformance/payloads/messenger/` is posted as Meta posts it (signed, each
to a Page of its own), then posted again: both get 200 and the second changes nothing (B4).
`EXPECTED` says, file by file, what a faithful desk does with it (SOURCES.md): the comment an agent
reads (its text, or its attachments; shares, reels and templates as readable text), a reply's
delivery state moved by a receipt or a watermark (a reply is sent first), the Page's own message
sent from another app or its inbox on the customer's ticket (the customer writes first), or no
ticket at all (opt-ins, referrals, account linking, an echo with nothing in it); an entry the desk
cannot read is skipped alone and counted in /metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from socialdesk.fakes import meta_api
from socialdesk.service import STORE
from tests.conformance import Case, Corpus, case_ids, cases, corpus_fixture, in_corpus
from warehouse import outbox as box
from warehouse.model import from_unix_ms
from warehouse.tickets import ensure_agent, reply

world = corpus_fixture("messenger")
INBOX = "the Facebook Page inbox"
BOTMAN_MID = "mid.1458668856218:ed81099e15d3f4f233"


@dataclass(frozen=True)
class Says:
    """A customer message: a new ticket whose one comment reads `body` with `attachments`, from the end
    user `user_id`; `info` is merged into the ticket's channel info."""

    body: str
    attachments: tuple[dict[str, Any], ...] = ()
    user_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """A receipt for our reply to `customer` (sent first, as `reply_id`, or before `watermark_ms`)."""

    customer: str
    state: str
    reply_id: str | None = None
    watermark_ms: int | None = None


@dataclass(frozen=True)
class Business:
    """The Page's message sent from elsewhere: its comment on the ticket of `customer`, who wrote first."""

    customer: str
    body: str
    origin: str


@dataclass(frozen=True)
class Nothing:
    """Not a customer message: no ticket. `skipped` entries could not be read and are counted."""

    skipped: int = 0


def media(kind: str, url: str) -> dict[str, Any]:
    return {"type": kind, "url": url}


EXPECTED: dict[str, Any] = {
    "fb_botman_account_linking": Nothing(),
    "fb_botman_audio": Says("", (media("audio", "http://facebookimage.com/audio.mp3"),)),
    "fb_botman_delivery_no_timestamp": Receipt("USER_ID", "delivered", reply_id=BOTMAN_MID),
    "fb_botman_echo_text": Business("1433960459967306", "Hi", INBOX),
    "fb_botman_file": Says("", (media("file", "http://facebookfile.com/file.pdf"),)),
    "fb_botman_image": Says("", (media("image", "http://facebookimage.com/image.png"),
                                 media("image", "http://facebookimage.com/imageX.png"))),
    "fb_botman_optin_no_sender": Nothing(skipped=1),  # only a user_ref: nobody to write to
    "fb_botman_postback_payload_only": Says("MY_PAYLOAD"),
    "fb_botman_quick_reply": Says("Red"),
    "fb_botman_read": Receipt("USER_ID", "read", watermark_ms=1458668856253),
    "fb_botman_referral": Nothing(),
    "fb_botman_text_nlp": Says("bye, see you tomorrow at 4pm", user_id="1433960459967306"),
    "fb_botman_video": Says("", (media("video", "http://facebook.com/video.mp4"),)),
    "fb_courier_attachment": Says("", (media("image", "https://image-url/foo.png"),)),
    "fb_courier_dlr": Receipt("5678", "delivered", reply_id=BOTMAN_MID),
    "fb_courier_duplicate_msg": Says("Hello World"),  # the same mid in two entries: stored once
    "fb_courier_echo": Nothing(),  # an echo with nothing in it
    "fb_courier_fallback": Says("shared a link: Foo — My Documents/foo.doc"),
    "fb_courier_hello_msg": Says("Hello World", user_id="5678"),
    "fb_courier_location_attachment": Says("", ({"type": "location", "latitude": 1.2, "longitude": -1.3},)),
    "fb_courier_no_messaging_entries": Nothing(skipped=1),
    "fb_courier_notification_messages_optin": Nothing(),
    "fb_courier_postback": Says("postback title", info={"referral": {
        "ref": "postback ref", "source": "postback source", "type": "postback type"}}),
    "fb_courier_postback_get_started": Says("postback title"),
    "fb_courier_postback_referral": Says("postback title", info={"referral": {
        "ref": "postback ref", "source": "postback source", "type": "postback type", "ad_id": "ad id"}}),
    "fb_courier_reel": Says("shared a reel: /reel/123451234512345/"),
    "fb_courier_referral": Nothing(),
    "fb_courier_referral_optin": Nothing(),
    "fb_courier_thumbs_up": Says("", (media("sticker", "https://scontent.xx.fbcdn.net/v/arst"),)),
    "fb_courier_unknown_messaging_entry": Nothing(skipped=1),
    "fb_metadocs_standby_echo": Business("1254459154682919",
                                         "sent a media template: https://www.facebook.com/commerce/update/",
                                         "another Messenger app (app 1517776481860111)"),
    "fb_metadocs_text": Says("hello, world!", user_id="1254459154682919"),
}


# -- helpers -----------------------------------------------------------------------------------------

# Older than every file of the corpus: a ticket shows only what came after it opened.
LONG_AGO_MS = int(datetime(2014, 1, 1).timestamp() * 1000)


async def post(world: Corpus, case: Case, body: bytes) -> None:
    """A body we build, to the case's Page, as Meta would post it."""
    headers, _, signed = world.connector.simulate(world.accounts[case.name], body)  # type: ignore[attr-defined]
    resp = await world.client.post("/webhooks/messenger", data=signed, headers=headers)
    assert resp.status == 200, await resp.text()


async def customer_wrote(world: Corpus, case: Case, customer: str, at_ms: int | None = LONG_AGO_MS) -> None:
    await post(world, case, meta_api.messenger_message_payload(world.accounts[case.name], customer, "Hello",
                                                               f"seed.{case.name}", timestamp_ms=at_ms))


async def reply_sent(world: Corpus, case: Case, expected: Receipt) -> None:
    """The customer's ticket with a reply of ours recorded as sent (as `reply_id`, or just before the
    watermark), in one transaction, so the running outbox never sees it waiting to be sent."""
    await customer_wrote(world, case, expected.customer, at_ms=None)  # now: the window is open
    account = world.accounts[case.name]

    def write(con: Any) -> None:
        agent = ensure_agent(con, "U0CORPUS", "Corpus agent")
        (ticket,) = con.execute("SELECT max(id) FROM tickets WHERE account = ?", [account]).fetchone()
        oid = reply(con, ticket, agent, "Our reply")["outbox_id"]
        box.record(con, [box.Outcome(oid, ticket, "sent", expected.reply_id or f"m_ours.{case.name}")])
        if expected.watermark_ms is not None:
            sent_at = from_unix_ms(expected.watermark_ms - 60_000).replace(tzinfo=None)
            con.execute("UPDATE outbox SET sent_at = ? WHERE id = ?", [sent_at, oid])

    await world.client.app[STORE].awrite(write)


async def skipped_so_far(world: Corpus) -> float:
    text = await (await world.client.get("/metrics")).text()
    found = re.search(r'^socialdesk_webhook_entries_skipped_total\{channel="messenger"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


# -- the corpus -------------------------------------------------------------------------------------

def test_every_messenger_file_of_the_corpus_says_what_a_faithful_desk_does_with_it() -> None:
    assert sorted(EXPECTED) == case_ids("messenger")


@in_corpus
@pytest.mark.parametrize("case", cases("messenger"), ids=lambda c: c.name)
async def test_every_messenger_file_is_answered_200_twice_and_kept_as_a_faithful_desk_does(
        world: Corpus, case: Case) -> None:
    expected = EXPECTED[case.name]
    if isinstance(expected, Receipt):
        await reply_sent(world, case, expected)
    elif isinstance(expected, Business):
        await customer_wrote(world, case, expected.customer)
    skipped_before = await skipped_so_far(world)

    first, second = await world.post_twice(case)

    assert (first.status, second.status) == (200, 200), first.text
    assert await skipped_so_far(world) - skipped_before == 2 * getattr(expected, "skipped", 0)
    tickets = world.tickets(case)
    if isinstance(expected, Nothing):
        assert tickets == []
    elif isinstance(expected, Says):
        [ticket] = tickets
        [comment] = ticket["comments"]
        assert (comment["author_role"], comment["body"]) == ("end-user", expected.body)
        assert comment["attachments"] == list(expected.attachments)
        if expected.user_id:
            assert ticket["recipient"] == expected.user_id
        info = ticket["fields"]["social_messaging_channel_info"]
        assert {k: info[k] for k in expected.info} == expected.info
    elif isinstance(expected, Receipt):
        [(state,)] = world.sql("SELECT state FROM outbox WHERE account = ?", world.accounts[case.name])
        assert state == expected.state
        assert len(tickets) == 1  # the receipt opened none
    elif isinstance(expected, Business):
        [ticket] = tickets  # the customer's: the Page's message opened none
        hello, business = ticket["comments"]
        assert (hello["author_role"], business["author_role"], business["body"]) == ("end-user", "agent",
                                                                                      expected.body)
        assert world.sql("SELECT origin FROM comments WHERE id = ?", business["id"]) == [(expected.origin,)]
    else:
        raise AssertionError(f"{case.name}: no expectation")
