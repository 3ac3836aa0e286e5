"""The WhatsApp files of the conformance corpus, through the real route, twice (issue 12).

Every file under `../shared/conformance/payloads/whatsapp/` is posted as Meta posts it (signed, each to
a business number of its own), then posted again: both get 200 and the second changes nothing
(B4). `EXPECTED` says, file by file, what a faithful desk does with it (SOURCES.md): the comment an
agent reads (its text, or its attachment's media id, type, filename and caption), a reply's delivery
state moved by a receipt (a reply with that platform id is sent first) with what WhatsApp says it
costs, the business's own message from the WhatsApp Business app on the customer's ticket (the
customer writes first), an edit or an unsend of a message received first, or no ticket at all
(system events, Meta's reports about our app); an entry the desk cannot read is skipped alone and
counted in /metrics.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from socialdesk.fakes import meta_api
from socialdesk.service import STORE
from tests.conformance import Case, Corpus, case_ids, cases, corpus_fixture, in_corpus
from warehouse import outbox as box
from warehouse import queries
from warehouse.tickets import ensure_agent, reply

world = corpus_fixture("whatsapp")
APP = "the WhatsApp Business app"
PYWA_BSUID = "US.13491208655302741918"


@dataclass(frozen=True)
class Says:
    """A customer message: a new ticket whose one comment reads `body` (with `attachment`, if given),
    from the end user known by `user_id` with this `profile`; `info` is merged into the channel info."""

    body: str
    attachment: dict[str, Any] | None = None
    user_id: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """A receipt for our reply `reply_id` (sent first): the reply's state after it, and its price."""

    reply_id: str
    state: str
    pricing: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Business:
    """What the business sent from the WhatsApp Business app: its comment on the ticket of `customer`,
    who wrote first; never a ticket of its own."""

    customer: str
    body: str


@dataclass(frozen=True)
class Reacted:
    """A reaction to `original`, a message `customer` sent first: the comment quotes it."""

    customer: str
    original: str
    body: str


@dataclass(frozen=True)
class Edited:
    """The customer edited `original` (received first): it stays as it was, the edit is an event."""

    customer: str
    original: str
    text: str
    caption: str | None = None


@dataclass(frozen=True)
class Withdrawn:
    """The customer unsent `original` (received first): the comment stays, marked withdrawn."""

    customer: str
    original: str


@dataclass(frozen=True)
class Nothing:
    """Not a customer message: no ticket. `skipped` entries could not be read and are counted."""

    skipped: int = 0


def attachment(kind: str, **keys: Any) -> dict[str, Any]:
    return {"type": kind, **keys}


CBP_SERVICE = {"billable": True, "pricing_model": "CBP", "category": "service"}
REFERRAL_FREE = {"pricing_model": "CBP", "billable": False, "category": "referral_conversion"}
EXPECTED: dict[str, Any] = {
    "wa_courier_button": Says("No"),
    "wa_courier_document": Says("", attachment("file", media_id="id_document", mime_type="application/pdf",
                                               caption="80skaraokesonglistartist")),
    "wa_courier_duplicate": Says("Hello World"),  # the same message twice in one body: stored once
    "wa_courier_error_errors": Nothing(),  # Meta's report about our app: logged for whoever runs it
    "wa_courier_error_msg": Says("sent an unsupported message (Unsupported message type)"),
    "wa_courier_error_status": Receipt("external_id", "failed", REFERRAL_FREE,
                                       "131014: Request for url https://URL.jpg failed with error: 404 (Not Found)"),
    "wa_courier_group_message": Says("Hello World, group message"),
    "wa_courier_hello": Says("Hello World", user_id="5678", profile={"name": "Kerry Fisher"}),
    "wa_courier_hello_from_bsuid": Says("Hello World", user_id="US.1234",
                                        profile={"name": "Kerry Fisher", "username": "kfisher",
                                                 "parent_user_id": "US.ENT.5678"}),
    "wa_courier_hello_user_id": Says("Hello World", user_id="US.1234",
                                     profile={"name": "Kerry Fisher", "username": "@kfisher", "phone": "+5678"}),
    "wa_courier_ignore_status": Receipt("external_id", "sent"),  # a `deleted` status moves nothing
    "wa_courier_list_reply": Says("Yes"),
    "wa_courier_location": Says("", attachment("location", latitude=0.0, longitude=1.0,
                                               title="Main Street Beach, Main Street Beach, Santa Cruz, CA",
                                               url="https://foursquare.com/v/4d7031d35b5df7744")),
    "wa_courier_nfm_reply": Says("Sent\nfirst_name: Bob\nage: 32"),
    "wa_courier_valid_status": Receipt("external_id", "sent", REFERRAL_FREE),
    "wa_metadocs_text": Says("Does it come in another color?", user_id="16505551234"),
    "wa_pywa_callback_button_button": Says("title", user_id=PYWA_BSUID, profile={"phone": "+972987654321"}),
    "wa_pywa_callback_button_quick_reply": Says("title"),
    "wa_pywa_callback_button_quick_reply_without_context": Says("title"),
    "wa_pywa_callback_selection_callback": Says("title"),
    "wa_pywa_callback_selection_description": Says("title (description)"),
    "wa_pywa_deleted_message_revoke": Withdrawn("<WHATSAPP_USER_PHONE_NUMBER>", "<ORIGINAL_WHATSAPP_MESSAGE_ID>"),
    "wa_pywa_edited_message_image": Edited(
        "16505551234", "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA=", "",
        caption="Updated image caption"),
    "wa_pywa_message_animated_sticker": Says("", attachment("sticker", media_id="1234567890987654321",
                                                            mime_type="image/webp")),
    "wa_pywa_message_audio": Says("", attachment("audio", media_id="1234567890987654321",
                                                 mime_type="audio/ogg; codecs=opus")),
    "wa_pywa_message_chosen_location": Says("", attachment(
        "location", latitude=37.4611978, longitude=-122.2164385,
        title="Facebook HQ, 1 Hacker Way, Menlo Park, CA 94025", url="https://maps.google.com/?cid=2000000000000000000")),
    "wa_pywa_message_contacts": Says("📇 shared contacts:\nChandler Bing: +1 555-555-5555 (CELL)\n"
                                     "Monica: +1 666-666-6666 (HOME)\nRachel Green: +1 777-777-7777 (WORK)"),
    "wa_pywa_message_current_location": Says("", attachment("location", latitude=12.25089, longitude=43.90539)),
    "wa_pywa_message_document": Says("", attachment("file", media_id="1234567890987654321",
                                                    mime_type="application/pdf", filename="filename.pdf",
                                                    caption="caption")),
    "wa_pywa_message_forwarded": Says("forwarded text"),
    "wa_pywa_message_forwarded_many_times": Says("text forwarded many times"),
    "wa_pywa_message_image": Says("", attachment("image", media_id="65463453", mime_type="image/jpeg")),
    "wa_pywa_message_interactive_message_with_err": Nothing(skipped=1),
    "wa_pywa_message_media_with_url": Says("", attachment("image", media_id="65463453", mime_type="image/jpeg")),
    "wa_pywa_message_order": Says("🛒 sent an order:\n3 × HAMBURGER at 30 ILS\n2 × FRENCH_FRIES at 35 ILS\n"
                                  "2 × SODA at 10 ILS\nTotal: 180 ILS"),
    "wa_pywa_message_reaction": Reacted("972987654321", "wamid.yzxyzx=", "reacted 😮 to: “Is it in stock?”"),
    "wa_pywa_message_referral": Says("BODY", info={"referral": {
        "source_url": "AD_OR_POST_FB_URL", "source_id": "ADID", "source_type": "ad or post", "headline": "AD_TITLE",
        "body": "AD_DESCRIPTION", "media_type": "image or video", "image_url": "RAW_IMAGE_URL",
        "video_url": "RAW_VIDEO_URL", "thumbnail_url": "RAW_THUMBNAIL_URL", "ctwa_clid": "CTWA_CLID"}}),
    "wa_pywa_message_reply": Says("replied text"),
    "wa_pywa_message_static_sticker": Says("", attachment("sticker", media_id="1234567890987654321",
                                                          mime_type="image/webp")),
    "wa_pywa_message_status_delivered": Receipt("wamid.xyzxyz", "delivered", CBP_SERVICE),
    "wa_pywa_message_status_failed": Receipt("wamid.xyzxyz", "failed",
                                             error="130472: User's number is part of an experiment"),
    "wa_pywa_message_status_group": Receipt("<WHATSAPP_MESSAGE_ID>", "read"),
    "wa_pywa_message_status_played": Receipt("wamid.xyzxyz", "played", CBP_SERVICE),
    "wa_pywa_message_status_read": Receipt("wamid.xyzxyz", "read", CBP_SERVICE),
    "wa_pywa_message_status_sent": Receipt("wamid.xyzxyz", "sent", CBP_SERVICE),
    "wa_pywa_message_status_with_tracker": Receipt("wamid.xyzxyz", "sent", CBP_SERVICE),
    "wa_pywa_message_text": Says("Body Text", user_id=PYWA_BSUID, profile={
        "name": "Test Name", "phone": "+972987654321", "parent_user_id": "US.ENT.11815799212886844830"}),
    "wa_pywa_message_unreaction_empty": Says("removed their reaction from a message"),
    "wa_pywa_message_unreaction_no_emoji": Says("removed their reaction from a message"),
    "wa_pywa_message_unsupported": Says("sent an unsupported message (Message type unknown)"),
    "wa_pywa_message_unsupported_with_type": Says("sent an unsupported message (type: pool)"),
    "wa_pywa_message_video": Says("", attachment("video", media_id="765756756", mime_type="video/mp4",
                                                 caption="caption")),
    "wa_pywa_message_voice": Says("", attachment("audio", media_id="1234567890987654321",
                                                 mime_type="audio/ogg; codecs=opus")),
    "wa_pywa_outgoing_message_delete": Business("972987654321", "🗑️ deleted a message for everyone"),
    "wa_pywa_outgoing_message_edit": Business("972987654321", "✏️ edited a message: Text was edited"),
    "wa_pywa_outgoing_message_text": Business("<WHATSAPP_USER_PHONE_NUMBER>", "Test message"),
    "wa_pywa_system_identity_change": Nothing(),
    "wa_pywa_system_phone_number_change": Nothing(),
}


# -- helpers -----------------------------------------------------------------------------------------

async def post(world: Corpus, case: Case, body: bytes) -> None:
    """A body we build, to the case's business number, as Meta would post it."""
    headers, _, signed = world.connector.simulate(world.accounts[case.name], body)  # type: ignore[attr-defined]
    resp = await world.client.post("/webhooks/whatsapp", data=signed, headers=headers)
    assert resp.status == 200, await resp.text()


# Older than every file of the corpus: a ticket shows only what came after it opened.
LONG_AGO = int(datetime(2014, 1, 1).timestamp())


async def customer_wrote(world: Corpus, case: Case, customer: str, message_id: str, text: str = "Hello",
                         at: int | None = LONG_AGO) -> None:
    await post(world, case, meta_api.whatsapp_message_payload(world.accounts[case.name], customer, text, message_id,
                                                              timestamp=at))


async def reply_sent(world: Corpus, case: Case, platform_id: str) -> None:
    """A customer ticket on the case's number with a reply of ours recorded as sent with `platform_id`.

    Queued and recorded in one transaction, so the running outbox never sees it waiting to be sent."""
    await customer_wrote(world, case, "15550001111", f"seed.{case.name}", at=None)  # now: the window is open
    account = world.accounts[case.name]

    def write(con: Any) -> None:
        agent = ensure_agent(con, "U0CORPUS", "Corpus agent")
        (ticket,) = con.execute("SELECT max(id) FROM tickets WHERE account = ?", [account]).fetchone()
        queued = reply(con, ticket, agent, "Our reply")
        box.record(con, [box.Outcome(queued["outbox_id"], ticket, "sent", platform_id)])

    await world.client.app[STORE].awrite(write)


async def skipped_so_far(world: Corpus) -> float:
    text = await (await world.client.get("/metrics")).text()
    found = re.search(r'^socialdesk_webhook_entries_skipped_total\{channel="whatsapp"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def customer_comments(world: Corpus, case: Case) -> list[dict[str, Any]]:
    return [c for c in world.comments(case) if c["author_role"] == "end-user"]


# -- the corpus -------------------------------------------------------------------------------------

def test_every_whatsapp_file_of_the_corpus_says_what_a_faithful_desk_does_with_it() -> None:
    assert sorted(EXPECTED) == case_ids("whatsapp")


@in_corpus
@pytest.mark.parametrize("case", cases("whatsapp"), ids=lambda c: c.name)
async def test_every_whatsapp_file_is_answered_200_twice_and_kept_as_a_faithful_desk_does(
        world: Corpus, case: Case) -> None:
    expected = EXPECTED[case.name]
    if isinstance(expected, Receipt):
        await reply_sent(world, case, expected.reply_id)
    elif isinstance(expected, Business):
        await customer_wrote(world, case, expected.customer, f"seed.{case.name}")
    elif isinstance(expected, Reacted):
        await customer_wrote(world, case, expected.customer, expected.original, "Is it in stock?")
    elif isinstance(expected, Edited | Withdrawn):
        await customer_wrote(world, case, expected.customer, expected.original, "The first version")
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
        assert comment["attachments"] == ([expected.attachment] if expected.attachment else [])
        identities = world.sql("SELECT platform_user_id, profile FROM identities WHERE account = ?",
                               world.accounts[case.name])
        if expected.user_id:
            assert ticket["recipient"] == expected.user_id  # replies go to the id the customer writes from
            assert expected.user_id in dict(identities)
            # the phone beside a business-scoped id is another identity of the same user
            assert len(world.sql("SELECT DISTINCT user_id FROM identities WHERE account = ?",
                                 world.accounts[case.name])) == 1
        for key, value in expected.profile.items():
            assert json.loads(dict(identities)[ticket["recipient"]])[key] == value
        info = ticket["fields"]["social_messaging_channel_info"]
        assert {k: info[k] for k in expected.info} == expected.info
    elif isinstance(expected, Receipt):
        [(state, pricing, error)] = world.sql("SELECT state, pricing, last_error FROM outbox WHERE account = ?",
                                              world.accounts[case.name])
        assert (state, json.loads(pricing) if pricing else None, error) == (
            expected.state, expected.pricing, expected.error)
        assert len(tickets) == 1  # the receipt opened none
    elif isinstance(expected, Business):
        [ticket] = tickets  # the customer's: the business's message opened none
        hello, business = ticket["comments"]
        assert (business["author_role"], business["body"]) == ("agent", expected.body)
        assert world.sql("SELECT origin FROM comments WHERE id = ?", business["id"]) == [(APP,)]
    elif isinstance(expected, Reacted):
        assert [c["body"] for c in customer_comments(world, case)] == ["Is it in stock?", expected.body]
    elif isinstance(expected, Edited):
        [ticket] = tickets
        [comment] = ticket["comments"]
        assert comment["body"] == "The first version"  # the original is kept
        [edit] = [e for e in ticket["events"] if e["kind"] == "comment_edited"]
        assert edit["data"]["text"] == expected.text
        assert [a.get("caption") for a in edit["data"]["attachments"]] == [expected.caption]
    elif isinstance(expected, Withdrawn):
        [ticket] = tickets
        [comment] = ticket["comments"]
        assert world.sql("SELECT body, withdrawn_at IS NOT NULL FROM comments WHERE id = ?", comment["id"]) == [
            ("The first version", True)]
    else:
        raise AssertionError(f"{case.name}: no expectation")


# -- beyond the table: the 2026 ids, end to end -------------------------------------------------------

@in_corpus
async def test_a_bsuid_only_customer_is_found_by_username_and_answered_by_recipient(world: Corpus) -> None:
    """Issue 12 "done when": a BSUID-only customer goes end to end: ticket, reply through the strict
    fake (in the form the Cloud API documents), receipt."""
    [case] = [c for c in cases("whatsapp") if c.name == "wa_courier_hello_from_bsuid"]
    account = world.accounts[case.name]
    now = datetime.now().astimezone()
    body = meta_api.whatsapp_message_payload(account, None, "Where is my parcel?", "wamid.e2e.bsuid",
                                             user_id="US.77777", username="ana.b", name="Ana",
                                             timestamp=int(now.timestamp()))
    world.sandbox.fakes["whatsapp"].customer_wrote(account, "US.77777", now)
    world.sandbox.fakes["whatsapp"].whatsapp_tokens[account] = world.connector.account(account).access_token  # type: ignore
    await post(world, case, body)
    found = world.client.app[STORE].read(lambda c: queries.search(c, "ana.b"))
    [user] = [u for u in found["users"] if u["name"] == "Ana"]
    [ticket_id] = user["ticket_ids"]
    result = await world.desk.reply(ticket_id, await world.desk.agent("U0CORPUS", "Corpus agent"), "On its way")
    sent = await _eventually(lambda: world.sql("SELECT platform_message_id FROM outbox WHERE id = ? "
                                               "AND state = 'sent'", result["outbox_id"]))
    [request] = [r for r in world.sandbox.fakes["whatsapp"].sent(f"/{account}/messages")]
    assert request.json["recipient"] == "US.77777" and "to" not in request.json
    status = json.loads(meta_api.whatsapp_status_payload(account, "US.77777", sent[0][0], "delivered"))
    await post(world, case, json.dumps(status).encode())
    assert world.sql("SELECT state FROM outbox WHERE id = ?", result["outbox_id"]) == [("delivered",)]


async def _eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return result

