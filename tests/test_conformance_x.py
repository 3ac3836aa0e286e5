"""Issue 12: every X file of the conformance corpus (../shared/conformance/payloads/x, read in place),
Account Activity API and X Activity API envelopes alike, posted through the real webhook route signed as X
signs, twice: 200 both times, the second changes nothing, and the desk does what a faithful desk does.

A customer's DM is a comment on their ticket; typing creates nothing; a read event moves our reply to
`read` (a sent reply is seeded first); a DM the business sent from elsewhere is the business's comment on
the customer's ticket (a customer with a ticket is seeded first), never a ticket; the echo of a DM
SocialDesk sent itself changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conformance import Case, Corpus, Posted, case_ids, cases, corpus_fixture, in_corpus, needs_corpus
from warehouse import outbox as box
from warehouse.ingest import Delivery
from warehouse.model import InboundMessage
from warehouse.tickets import ensure_agent, reply

world = corpus_fixture("x")
pytestmark = needs_corpus

NO_TICKET = "no ticket"
SEED_AT = datetime(2019, 1, 28, 21, 0, tzinfo=UTC)  # before every file's own events


async def customer_wrote(world: Corpus, case: Case, user: str) -> int:
    """A ticket of `user` on the case's account, as if they had written before the file's events."""
    delivery = Delivery([InboundMessage("x", world.accounts[case.name], user, f"seed-{case.name}", SEED_AT,
                                        "Any news about my order?")], "x")
    return (await world.desk.ingest(delivery)).created_tickets[0]


async def we_replied(world: Corpus, case: Case, user: str, platform_id: str, text: str = "It ships today") -> None:
    """...and our reply to them, sent, known to X as `platform_id` (one write, so the sender never sees it queued)."""
    ticket = await customer_wrote(world, case, user)

    def sent(con: Any) -> None:
        agent = ensure_agent(con, "U0CONFORMANCE", "Ada")
        outbox_id = reply(con, ticket, agent, text)["outbox_id"]
        box.record(con, [box.Outcome(outbox_id, ticket, "sent", platform_id)])

    await world.desk.write(sent)


SEED: dict[str, Callable[[Corpus, Case], Awaitable[Any]]] = {
    # read receipts up to a reply of ours
    "x_docs_aaa_mark_read": lambda w, c: we_replied(w, c, "199566737", "963085315333238788"),
    "x_tock_read": lambda w, c: we_replied(w, c, "707685546848550916", "1090000991079071748"),
    # the business wrote from elsewhere to a customer who has a ticket
    "x_docs_xaa_dm_sent": lambda w, c: customer_wrote(w, c, "2244994945"),
    # the echo of a DM SocialDesk sent itself
    "x_tock_sent_echo": lambda w, c: we_replied(w, c, "707685546848550916", "1090238550052880394",
                                                "Test #test @virginie_buchin https://t.co/N3w1YJ9hVr"),
}
_posted: dict[str, tuple[Posted, Posted]] = {}


async def posted(world: Corpus, case: Case) -> tuple[Posted, Posted]:
    if case.name not in _posted:
        if case.name in SEED:
            await SEED[case.name](world, case)
        _posted[case.name] = await world.post_twice(case)
    return _posted[case.name]


def reply_states(world: Corpus, case: Case) -> list[tuple[str, str]]:
    return world.sql("SELECT platform_message_id, state FROM outbox WHERE account = ?", world.accounts[case.name])


def read_receipt(platform_id: str) -> Callable[[Corpus, Case], None]:
    def check(world: Corpus, case: Case) -> None:
        assert reply_states(world, case) == [(platform_id, "read")]
        [ticket] = world.tickets(case)  # the seeded one: a receipt opens no ticket
        assert [e["kind"] for e in ticket["events"]].count("reply_read") == 1
    return check


def business_comment(world: Corpus, case: Case) -> None:
    [ticket] = world.tickets(case)  # the customer's, no new one
    seeded, echo = ticket["comments"]
    assert (echo["body"], echo["author_role"], echo["public"]) == ("Thanks for the update!", "agent", True)
    assert world.sql("SELECT origin FROM comments WHERE id = ?", echo["id"]) == [("X",)]
    assert ticket["recipient"] == "2244994945"


def our_own_echo(world: Corpus, case: Case) -> None:
    [ticket] = world.tickets(case)
    assert [c["body"] for c in ticket["comments"]] == [
        "Any news about my order?", "Test #test @virginie_buchin https://t.co/N3w1YJ9hVr"]
    assert reply_states(world, case) == [("1090238550052880394", "sent")]


# file -> the comments the agent sees as (text, requester name), NO_TICKET, or a check of its own.
EXPECTED: dict[str, Any] = {
    "x_docs_aaa_dm_text": [("Hello World!", "Jordan Brinks")],
    "x_docs_aaa_mark_read": read_receipt("963085315333238788"),
    "x_docs_aaa_typing": NO_TICKET,
    "x_docs_xaa_dm_received": [("hello!", "OtherUser")],  # the X Activity API: routed by its filter's user id
    "x_docs_xaa_dm_sent": business_comment,
    "x_tock_read": read_receipt("1090000991079071748"),
    "x_tock_received": [("Plouf", "Virginie")],
    "x_tock_sent_echo": our_own_echo,
    "x_tock_typing": NO_TICKET,
}


def test_every_x_file_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(c.path.stem for c in cases("x"))


@in_corpus
@pytest.mark.parametrize("case", cases("x"), ids=case_ids("x"))
async def test_every_x_file_is_answered_200_twice_and_the_second_changes_nothing(world: Corpus, case: Case) -> None:
    first, second = await posted(world, case)
    assert (first.status, second.status) == (200, 200), first.text


@in_corpus
@pytest.mark.parametrize("case", cases("x"), ids=case_ids("x"))
async def test_every_x_file_is_handled_as_a_faithful_desk_would(world: Corpus, case: Case) -> None:
    await posted(world, case)
    expected = EXPECTED[case.name]
    if callable(expected):
        expected(world, case)
    elif expected == NO_TICKET:
        assert world.tickets(case) == []
    else:
        [ticket] = world.tickets(case)
        assert [(c["body"], c["author"]) for c in ticket["comments"]] == expected
        assert all(c["author_role"] == "end-user" and c["attachments"] == [] for c in ticket["comments"])
        assert ticket["tags"] == ["twitter", "messaging_support"]
