"""Issue 12: every LINE file of the conformance corpus (../shared/conformance/payloads/line, read in place),
posted through the real webhook route, signed as LINE signs, twice: 200 both times, the second changes
nothing, and the desk does with each what SOURCES.md says a faithful desk does.

A customer's message is a comment with its text or attachments (a sticker's typed text beside the
sticker); an unsend or an edit changes the comment it names; follows, joins, postbacks, beacons,
video-play and event kinds LINE added later create no ticket; group and room chats are not support
conversations. LINE sends no delivery or read receipts for normal chats, so there are none to move.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance import Case, Corpus, Posted, case_ids, cases, corpus_fixture, in_corpus, needs_corpus

world = corpus_fixture("line")
pytestmark = needs_corpus

NO_TICKET = "no ticket"
USER = "u206d25c2ea6bd87c17655609a1c37cb8"  # the Java SDK's fixtures write the user id in lower case


def sticker(keywords: str, title: str = "1/1") -> dict[str, Any]:
    return {"type": "sticker", "title": title, "caption": keywords}


# file -> what the agent sees: each comment as (text, attachments), or NO_TICKET.
EXPECTED: dict[str, Any] = {
    "line_java_account_link": NO_TICKET,
    "line_java_beacon": NO_TICKET,
    "line_java_file": [("", [{"type": "file", "media_id": "325708", "filename": "sample.pdf"}])],
    "line_java_follow": NO_TICKET,
    "line_java_image": [("", [{"type": "image", "url": "https://example.com/original.jpg"}])],
    "line_java_join": NO_TICKET,  # the bot joined a group
    "line_java_leave": NO_TICKET,
    "line_java_location": [("", [{"type": "location", "title": "hello",
                                  "caption": "〒150-0002 東京都渋谷区渋谷２丁目２１−１",
                                  "latitude": 35.65910807942215, "longitude": 139.70372892916203}])],
    "line_java_member_joined": NO_TICKET,
    "line_java_member_left": NO_TICKET,
    "line_java_message_edited": NO_TICKET,  # an edit in a group chat (the only place LINE allows edits today)
    "line_java_postback": NO_TICKET,  # a button of ours the customer tapped: no message of theirs
    "line_java_sticker": [("", [sticker("bed, sleep, bedtime")])],
    "line_java_sticker_keywords_array": [("", [sticker("keyword")])],
    "line_java_sticker_with_text": [("userEnteredText", [sticker("bed, sleep, bedtime")])],
    "line_java_text_emojis": [("Hello, world", [])],
    "line_java_text_group": NO_TICKET,
    "line_java_text_mention": [("Hello, world @Brown and @Cony", [])],
    "line_java_text_user": [("Hello, world", [])],
    "line_java_unfollow": NO_TICKET,
    "line_java_unknown": NO_TICKET,  # an event kind LINE added later, and a message from an unknown source
    "line_java_unsend": [("Hello, world", [])],  # kept, marked withdrawn (seeded first: see SEED)
    "line_java_video": [("", [{"type": "video", "url": "https://example.com/original.mp4"}])],
    "line_java_video_play_complete": NO_TICKET,
    "line_java_webhook_redelivery": [("Hello, world", [])],
    # 28 events: most reuse message id 325708, so the first one (a text) is the message; rooms, groups,
    # follows, postbacks and beacons store nothing; a second image is its own message, fetched from LINE.
    "line_py_v3_webhook_batch": [("Hello, world", []),
                                 ("", [{"type": "image", "media_id": "354718705033693861"}])],
}


def test_every_line_file_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(c.path.stem for c in cases("line"))


async def seed_the_message_it_withdraws(world: Corpus, case: Case) -> None:
    """The unsend file withdraws message 325708: the account first receives it (the text_user file's)."""
    [text] = [c for c in cases("line") if c.name == "line_java_text_user"]
    account = world.accounts[case.name]
    body = text.body().replace(b'"Uab012345678901234567890123456789"', f'"{account}"'.encode())
    headers, _, signed = world.connector.simulate(account, body)  # type: ignore[attr-defined]
    name = world.connector.account_info(account)["account_name"]
    assert (await world.client.post(f"/webhooks/line/{name}", data=signed, headers=headers)).status == 200


SEED = {"line_java_unsend": seed_the_message_it_withdraws}
_posted: dict[str, tuple[Posted, Posted]] = {}


async def posted(world: Corpus, case: Case) -> tuple[Posted, Posted]:
    """The case, seeded where it needs an earlier message, posted twice: once per run of the module."""
    if case.name not in _posted:
        if case.name in SEED:
            await SEED[case.name](world, case)
        _posted[case.name] = await world.post_twice(case)
    return _posted[case.name]


def seen(world: Corpus, case: Case) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(c["body"], c["attachments"]) for c in world.comments(case)]


@in_corpus
@pytest.mark.parametrize("case", cases("line"), ids=case_ids("line"))
async def test_every_line_file_is_answered_200_twice_and_the_second_changes_nothing(world: Corpus,
                                                                                      case: Case) -> None:
    first, second = await posted(world, case)  # post_twice compares the store before and after the second
    assert (first.status, second.status) == (200, 200), first.text


@in_corpus
@pytest.mark.parametrize("case", cases("line"), ids=case_ids("line"))
async def test_every_line_file_is_handled_as_a_faithful_desk_would(world: Corpus, case: Case) -> None:
    await posted(world, case)
    expected = EXPECTED[case.name]
    if expected == NO_TICKET:
        assert world.tickets(case) == []
        return
    [ticket] = world.tickets(case)
    assert seen(world, case) == expected
    assert ticket["tags"] == ["line", "messaging_support"]
    assert all(c["author_role"] == "end-user" for c in ticket["comments"])


@in_corpus
async def test_the_batchs_edit_is_recorded_on_the_message_it_edits_not_as_a_message(world: Corpus) -> None:
    """messageEdited (here from a one-to-one chat): the original comment stays, the new text is an edit event."""
    [case] = [c for c in cases("line") if c.name == "line_py_v3_webhook_batch"]
    await posted(world, case)
    [ticket] = world.tickets(case)
    edits = [e["data"] for e in ticket["events"] if e["kind"] == "comment_edited"]
    assert [e["text"] for e in edits] == ["Hello, edited world"]
    assert edits[0]["comment_id"] == ticket["comments"][0]["id"]
    assert not any(c["body"].startswith("✏️") for c in ticket["comments"])


@in_corpus
async def test_an_unsend_marks_the_customers_message_withdrawn_and_keeps_it(world: Corpus) -> None:
    [case] = [c for c in cases("line") if c.name == "line_java_unsend"]
    await posted(world, case)
    [ticket] = world.tickets(case)
    assert [c["body"] for c in ticket["comments"]] == ["Hello, world"]
    assert world.sql("SELECT withdrawn_at IS NOT NULL FROM comments WHERE ticket_id = ?", ticket["id"]) == [(True,)]
    assert [e["kind"] for e in ticket["events"]].count("comment_withdrawn") == 1
