"""The one ingestion path: normalized inbound messages and receipts into tickets (R1, R2, R4, R6-R8, B2, B4).

Webhooks and `socialdesk ingest` both end here, through the log (warehouse.log), which calls this
in log order on the writer thread. A batch is handled set-based: a fixed number of
statements whatever its size, so group commit makes ingestion fast. Replays are harmless: every
message is keyed by (channel, business account, platform message id) and a key seen before is
skipped.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa

from warehouse import channels, clock
from warehouse.model import (
    SOCIAL_TAG,
    UNSOLVED,
    Delivery,
    InboundMessage,
    Item,
    MessageEdit,
    MessageWithdrawn,
    StatusUpdate,
    dumps,
)
from warehouse.phones import to_e164
from warehouse.redact import redact_cards
from warehouse.rows import arrow, event, insert, next_ids, record_events, scalar, sql_list, tag_text

log = logging.getLogger(__name__)
DELIVERY_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3, "played": 4}
QUOTE_CHARS = 200  # how much of a message a reaction to it quotes


@dataclass(slots=True)
class IngestResult:
    stored: int = 0  # new messages stored
    duplicates: int = 0  # messages seen before (replays, redeliveries)
    receipts: int = 0  # receipts that changed a reply's state
    created_tickets: list[int] = field(default_factory=list)
    updated_tickets: list[int] = field(default_factory=list)
    dead_letters: int = 0  # items that failed and were dead-lettered (warehouse.log)


def ingest_batch(con: duckdb.DuckDBPyConnection, deliveries: list[Delivery]) -> list[IngestResult]:
    """Store everything `deliveries` carried in the caller's transaction; one result per delivery."""
    now = clock.now()
    results = [IngestResult() for _ in deliveries]

    fresh: list[tuple[int, Item]] = []
    seen: set[tuple[str, str, str]] = set()
    for n, d in enumerate(deliveries):
        for item in d.items:
            key = _key(item)
            if key is None:
                continue
            if key in seen:
                results[n].duplicates += 1
                continue
            seen.add(key)
            fresh.append((n, item))
    if fresh:
        new = _record_keys(con, list(seen))
        stored: list[tuple[int, Item]] = []
        for n, item in fresh:
            if _key(item) in new:
                stored.append((n, item))
                results[n].stored += 1
            else:
                results[n].duplicates += 1
        edits = [(n, i) for n, i in stored if isinstance(i, MessageEdit)]
        withdrawals = [(n, i) for n, i in stored if isinstance(i, MessageWithdrawn)]
        business = [(n, i) for n, i in stored if isinstance(i, InboundMessage) and i.business_origin]
        messages = [(n, i) for n, i in stored if isinstance(i, InboundMessage) and not i.business_origin]
        if messages:
            _store_messages(con, messages, results, now)
        # An edit of a message we never received is kept as a message of its own: nothing is lost.
        # (Looked for after this batch's messages are stored: an edit may come in the body of its original.)
        unmatched = _unmatched_edits(con, edits)
        if unmatched:
            _store_messages(con, unmatched, results, now)
        if business:
            _store_business_messages(con, business, now)
        _record_edits(con, edits, now)
        _record_withdrawals(con, withdrawals, now)

    receipts = [(n, s) for n, d in enumerate(deliveries) for s in d.items if isinstance(s, StatusUpdate)]
    for n, status in receipts:
        results[n].receipts += apply_receipt(con, status, now)
    # The raw bodies are in the log already (the inbox, warehouse.log), which keeps a body once: when
    # what it carried brought something.
    return results


def _record_keys(con: duckdb.DuckDBPyConnection, keys: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Record `keys` (distinct) in inbound_keys; returns those seen for the first time.

    Looked up by message id (its index: migration 014), then only the new ones inserted. The store has one
    writer, so nothing comes between the two. (INSERT ... ON CONFLICT scans the whole table.)
    """
    known = set(con.execute("SELECT channel, account, message_id FROM inbound_keys "
                            f"WHERE message_id IN {sql_list({k[2] for k in keys})}").fetchall())
    new = [k for k in keys if k not in known]
    insert(con, "inbound_keys", [{"channel": c, "account": a, "message_id": m} for c, a, m in new])
    return set(new)


def _key(item: Item) -> tuple[str, str, str] | None:
    """What makes an item the same item when it comes again (a replay, a redelivery)."""
    if isinstance(item, InboundMessage):
        return (item.channel, item.account, item.message_id)
    if isinstance(item, MessageEdit):
        return (item.channel, item.account, f"edit:{item.edit_id}")
    if isinstance(item, MessageWithdrawn):
        return (item.channel, item.account, f"withdrawn:{item.message_id}")
    return None


def _naive(dt: datetime) -> datetime:
    return clock.naive_utc(dt)


Key = tuple[str, str, str]  # (channel, business account, platform user id)


def _identity_key(m: InboundMessage) -> tuple[str, str, str]:
    return (m.channel, m.account, m.user_id)


def _display_name(m: InboundMessage) -> str:
    name = m.profile.get("name") or m.profile.get("screen_name")
    if name:
        return str(name)
    phone = to_e164(m.profile.get("phone"))
    return f"{channels.label(m.channel)} user {phone or m.user_id[-8:]}"


def _social_info(m: InboundMessage) -> dict[str, Any]:
    # Keyed by identity so that what each channel sent survives merges side by side (R6).
    return {f"{m.channel}:{m.account}": {**m.profile, "platform_user_id": m.user_id}}


def _changes(stored: str | None, profile: dict[str, Any]) -> bool:
    if stored is None:
        return True
    before = json.loads(stored)
    return any(before.get(k) != v for k, v in profile.items())


def _store_messages(con: duckdb.DuckDBPyConnection, stored: list[tuple[int, InboundMessage]],
                    results: list[IngestResult], now: datetime) -> None:
    """Customers' messages into users (R4), tickets (R1, R2) and comments, in a fixed number of statements."""
    events: list[dict[str, Any]] = []
    known, new_users = _store_senders(con, [m for _, m in stored], now, events)
    comments = _store_tickets(con, stored, known, new_users, results, now, events)
    _store_comments(con, comments, now, events)
    record_events(con, events)


@dataclass(slots=True)
class _Senders:
    """Who a batch's senders are, decided before anything is written."""

    users: dict[Key, int] = field(default_factory=dict)  # sender -> user id (a founder's once created)
    profiles: dict[Key, str] = field(default_factory=dict)  # sender -> the profile its identity has in the store
    founders: list[Key] = field(default_factory=list)  # senders making a user of their own, first writer first
    joining: dict[Key, Key] = field(default_factory=dict)  # id new to the store -> the founder whose user it is
    linked: dict[Key, int] = field(default_factory=dict)  # sender new to the store -> the stored user it is
    new: set[Key] = field(default_factory=set)  # senders whose user is made by this batch


def _store_senders(con: duckdb.DuckDBPyConnection, messages: list[InboundMessage], now: datetime,
                   events: list[dict[str, Any]]) -> tuple[dict[Key, int], set[Key]]:
    """End users: one per (channel, business account, platform user) (R4), created on first sight.

    Returns each sender's user id and the senders whose user is new to the store; their events go into `events`.
    """
    latest: dict[Key, InboundMessage] = {}  # in the order of each sender's first message
    aliases: dict[Key, dict[Key, None]] = {}  # each sender's other ids on the account, in the order named
    for m in sorted(messages, key=lambda m: m.sent_at):
        key = _identity_key(m)
        latest[key] = m
        aliases.setdefault(key, {}).update(dict.fromkeys((m.channel, m.account, a) for a in m.aliases
                                                         if a != m.user_id))
    senders = _identify_senders(latest, aliases, _known_ids(con, set(latest).union(*aliases.values())))
    _create_users(con, senders, latest, now, events)
    _update_profiles(con, latest, senders, now)
    return senders.users, senders.new


def _known_ids(con: duckdb.DuckDBPyConnection, ids: set[Key]) -> dict[Key, tuple[int, str]]:
    """The user and stored profile of each of `ids` the store knows."""
    # The senders and the other ids they name, in one round trip: both are looked up by platform id.
    return {(c, a, u): (uid, profile) for c, a, u, uid, profile in con.execute(
        "SELECT channel, account, platform_user_id, user_id, profile FROM identities "
        f"WHERE platform_user_id IN {sql_list({k[2] for k in ids})}").fetchall() if (c, a, u) in ids}


def _identify_senders(latest: Mapping[Key, InboundMessage], aliases: Mapping[Key, Mapping[Key, None]],
                      stored: Mapping[Key, tuple[int, str]]) -> _Senders:
    """Each sender's user, deciding in the order they first wrote, as batches of one message each would.

    A user first known by one id who writes with another (a WhatsApp phone number, then the business-scoped
    user id beside it) is the same user: an id new to the store that names another id of theirs joins the user
    that id belongs to, whether the store knows it or an earlier sender of this batch made it. Any other new
    id makes a user, whose ids are it and the ids it names. So two new senders naming the same phone are one
    user, whether their messages share a batch or not, and no id is given to two users.
    """
    s = _Senders()
    in_store = {k: uid for k, (uid, _) in stored.items()}  # and, as they are linked, the new ids of those users
    for key in latest:
        if key in stored:
            s.users[key], s.profiles[key] = stored[key]
            continue
        if key in s.joining:  # an earlier sender named it: it is an id of their user already
            s.new.add(key)
        else:
            via = next((a for a in aliases[key] if a in in_store or a in s.joining), None)
            if via is None:
                s.founders.append(key)
                s.new.add(key)
                s.joining.update(dict.fromkeys([key, *aliases[key]], key))
                continue
            if via in in_store:
                s.users[key] = s.linked[key] = in_store[key] = in_store[via]
            else:
                s.joining[key] = s.joining[via]
                s.new.add(key)
        # Made as another id of a user's, without a profile: the sender's latest message gives it one.
        s.profiles[key] = "{}"
    return s


def _create_users(con: duckdb.DuckDBPyConnection, s: _Senders, latest: Mapping[Key, InboundMessage],
                  now: datetime, events: list[dict[str, Any]]) -> None:
    """A user for each founder, from their latest message, and every identity new to the store; the users'
    ids go into `s.users`."""
    new_users: list[dict[str, Any]] = []
    new_idents: list[dict[str, Any]] = []
    for uid, key in zip(next_ids(con, "user_ids", len(s.founders)), s.founders, strict=True):
        m = latest[key]
        s.users[key] = uid
        new_users.append({"id": uid, "role": "end-user", "name": _display_name(m),
                          "phone": to_e164(m.profile.get("phone")), "social_messaging_info": dumps(_social_info(m)),
                          "created_at": now, "updated_at": now})
        new_idents.append({"channel": key[0], "account": key[1], "platform_user_id": key[2], "user_id": uid,
                           "profile": dumps(m.profile), "created_at": now})
        events.append(event(None, "user_created", "system", user_id=uid, at=now, channel=key[0], account=key[1]))
    # A user's other ids are identities too (the phone beside a WhatsApp business-scoped id): a later message
    # that shows only one of them is the same user. Their profiles come with the messages sent from them.
    others = [(key, s.users[founder]) for key, founder in s.joining.items() if key != founder]
    for key, uid in [*others, *s.linked.items()]:
        if key in latest:
            s.users[key] = uid
        new_idents.append({"channel": key[0], "account": key[1], "platform_user_id": key[2], "user_id": uid,
                           "profile": "{}", "created_at": now})
    insert(con, "users", new_users)
    insert(con, "identities", new_idents)


def _update_profiles(con: duckdb.DuckDBPyConnection, latest: Mapping[Key, InboundMessage], s: _Senders,
                     now: datetime) -> None:
    """Senders' users and identities take the profile of their latest message (a founder's user has it already)."""
    founders = set(s.founders)
    # Returning users mostly send the same profile again: only a changed one is written.
    updates: list[dict[str, Any]] = [
        {"id": s.users[k], "patch": dumps(_social_info(m)), "phone": to_e164(m.profile.get("phone")),
         "name": m.profile.get("name"), "profile": dumps(m.profile), "channel": k[0], "account": k[1],
         "platform_user_id": k[2], "seq": seq}
        for seq, (k, m) in enumerate(latest.items())
        if k not in founders and m.profile and _changes(s.profiles.get(k), m.profile)]
    if not updates:
        return
    _updates = arrow(updates)  # noqa: F841
    # A user who wrote from several ids takes their profiles in the order the ids first wrote, as batches of one
    # message each would: UPDATE ... FROM would take any one row of a user's, so theirs are folded first.
    con.execute("UPDATE users SET social_messaging_info = list_reduce(list_prepend(users.social_messaging_info, "
                "u.patches), lambda a, b: json_merge_patch(a, b)), phone = coalesce(users.phone, u.phone), "
                "name = coalesce(u.name, users.name), updated_at = ? "
                "FROM (SELECT id, list(patch::JSON ORDER BY seq) AS patches, "
                "arg_min(phone, seq) FILTER (WHERE phone IS NOT NULL) AS phone, "
                "arg_max(name, seq) FILTER (WHERE name IS NOT NULL) AS name FROM _updates GROUP BY id) u "
                f"WHERE users.id = u.id AND users.id IN {sql_list({u['id'] for u in updates})}", [now])
    con.execute("UPDATE identities SET profile = json_merge_patch(identities.profile, u.profile::JSON) "
                "FROM _updates u WHERE identities.channel = u.channel AND identities.account = u.account "
                "AND identities.platform_user_id = u.platform_user_id "
                f"AND identities.platform_user_id IN {sql_list(u['platform_user_id'] for u in updates)}")


def _store_tickets(con: duckdb.DuckDBPyConnection, stored: list[tuple[int, InboundMessage]],
                   known: Mapping[Key, int], new_users: set[Key], results: list[IngestResult], now: datetime,
                   events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tickets: the end user's unsolved ticket on that business account, else a new one (R1, R2).

    `results` learn the tickets created and continued, `events` their events. Returns the comment rows of the
    messages, ids to be given.
    """
    open_tickets = _open_tickets(con, {_identity_key(m) for _, m in stored}, known, new_users)
    groups = _conversations(stored, open_tickets, known)
    unsolved = {ticket.id: ticket for ticket in open_tickets.values()}
    account_info = {(c, a): json.loads(info) for c, a, info in con.execute(
        "SELECT channel, account, info FROM accounts").fetchall()}

    quotes = _quoted(con, [m for _, m in stored if m.reaction is not None and m.reply_to])
    to_create = [c for c in groups if not isinstance(c, int)]
    new_ids = dict(zip(to_create, next_ids(con, "ticket_ids", len(to_create)), strict=True))
    new_tickets: list[dict[str, Any]] = []
    ticket_updates: list[dict[str, Any]] = []
    comments: list[dict[str, Any]] = []
    for conversation, items in groups.items():
        # Replies go to the id the customer wrote from last.
        key = _identity_key(items[-1][1])
        if isinstance(conversation, int):
            tid = conversation
            ticket_updates.append(_continued_ticket(unsolved[tid], key, items, known[key], quotes, now, events))
            results[items[0][0]].updated_tickets.append(tid)
        else:
            tid = new_ids[conversation]
            new_tickets.append(_new_ticket(tid, key, items, known[key], account_info, quotes, now, events))
            results[items[0][0]].created_tickets.append(tid)
        _add_comments(tid, known[key], items, quotes, now, comments, events)
    insert(con, "tickets", new_tickets)
    _update_continued_tickets(con, ticket_updates, now)
    return comments


# The unsolved ticket a conversation continues, or (channel, business account, user) for one it opens.
Conversation = int | tuple[str, str, int]


def _conversations(stored: list[tuple[int, InboundMessage]], open_tickets: Mapping[Key, Unsolved],
                   users: Mapping[Key, int]) -> dict[Conversation, list[tuple[int, InboundMessage]]]:
    """Each conversation's messages, oldest first, with the number of the delivery that brought each.

    A sender with no unsolved ticket shares a new one with the user's other ids that have none on that
    account, as batches of one message each would: the first opens it, the next find it by the first's id.
    """
    groups: dict[Conversation, list[tuple[int, InboundMessage]]] = defaultdict(list)
    for n, m in sorted(stored, key=lambda nm: nm[1].sent_at):
        key = _identity_key(m)
        found = open_tickets.get(key)
        groups[found.id if found is not None else (m.channel, m.account, users[key])].append((n, m))
    return groups


def _new_ticket(tid: int, key: Key, items: list[tuple[int, InboundMessage]], requester: int,
                account_info: Mapping[tuple[str, str], Any], quotes: dict[Key, str], now: datetime,
                events: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of the ticket a sender's messages open; its events go into `events`."""
    channel, account, recipient = key
    first, last = _naive(items[0][1].sent_at), _naive(items[-1][1].sent_at)
    status = "new" if len(items) == 1 else "open"
    info = account_info.get((channel, account)) or {"channel": channel, "account": account}
    for _, m in items:
        info = {**info, **m.channel_info}
    name = _display_name(items[0][1])
    row = {
        "id": tid, "status": status, "requester_id": requester, "channel": channel, "account": account,
        "recipient": recipient, "subject": f"{channels.label(channel)} conversation with {name}",
        "tags": [tag := channels.get(channel).tag, SOCIAL_TAG], "tag_text": tag_text([tag, SOCIAL_TAG]),
        "channel_info": dumps(info), "custom_fields": "{}",
        "end_user_messages": len(items), "created_at": first, "updated_at": now,
        "status_changed_at": now, "last_end_user_message_at": last,
        "last_end_user_text": _preview(items[-1][1], quotes)}
    events.append(event(tid, "ticket_created", "end-user", requester, at=now, channel=channel,
                        account=account, status="new"))
    if status == "open":
        events.append(event(tid, "status_changed", "end-user", requester, at=now, previous="new",
                            status="open"))
    return row


def _continued_ticket(ticket: Unsolved, key: Key, items: list[tuple[int, InboundMessage]], requester: int,
                      quotes: dict[Key, str], now: datetime, events: list[dict[str, Any]]) -> dict[str, Any]:
    """What a customer's messages change on the unsolved ticket they continue (it opens again, and is answered
    on the id `key` of their latest); its events go into `events`."""
    info_patch: dict[str, Any] = {}
    for _, m in items:
        info_patch.update(m.channel_info)
    if ticket.status != "open":
        events.append(event(ticket.id, "status_changed", "end-user", requester, at=now, previous=ticket.status,
                            status="open"))
    # Most customers write from the id their ticket is answered on: then the indexed column is left alone.
    return {"id": ticket.id, "recipient": key[2] if key[2] != ticket.recipient else None, "count": len(items),
            "first": _naive(items[0][1].sent_at),
            "last": _naive(items[-1][1].sent_at), "text": _preview(items[-1][1], quotes),
            "info": dumps(info_patch) if info_patch else None}


def _add_comments(tid: int, author: int, items: list[tuple[int, InboundMessage]], quotes: dict[Key, str],
                  now: datetime, comments: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """A public comment per message onto `comments`, card numbers redacted from its text and captions."""
    for _, m in items:
        text, redacted = redact_cards(_body(m, quotes))
        caption_redactions = 0
        attachments = []
        for a in m.attachments:
            d = a.to_dict()
            if a.caption:
                d["caption"], c = redact_cards(a.caption)
                caption_redactions += c
            attachments.append(d)
        comments.append({"ticket_id": tid, "author_id": author, "public": True, "body": text,
                         "attachments": dumps(attachments), "platform_message_id": m.message_id,
                         "created_at": _naive(m.sent_at)})
        if redacted or caption_redactions:
            events.append(event(tid, "card_number_redacted", "system", at=now, message_id=m.message_id,
                                count=redacted + caption_redactions))


# Up to this many tickets, an update finds them by id (its index); more, and a join with every ticket's id costs
# less (2,000 tickets: 25 -> 6 ms in a store of 10,000, 85 -> 64 ms in one of a million).
UPDATE_BY_INDEX = 256


def _update_continued_tickets(con: duckdb.DuckDBPyConnection, ticket_updates: list[dict[str, Any]],
                              now: datetime) -> None:
    """The tickets the messages continue: open, with the new messages counted, answered on the id the customer
    wrote from last (a row's `recipient`, None when it is the one the ticket has).

    The recipient is set in a statement of its own, for the few tickets whose customer changed ids: DuckDB
    rewrites an indexed column's index entries even when the value stays the same, which made the update
    of 1,000 tickets 2.5 times slower.
    """
    if not ticket_updates:
        return
    _ticket_updates = arrow(ticket_updates)  # noqa: F841
    con.execute(
        f"UPDATE tickets SET status = 'open', "
        f"status_changed_at = CASE WHEN tickets.status <> 'open' THEN ?::TIMESTAMP "
        f"ELSE tickets.status_changed_at END, end_user_messages = end_user_messages + u.count, "
        f"last_end_user_text = CASE WHEN tickets.last_end_user_message_at IS NULL "
        f"OR u.last >= tickets.last_end_user_message_at THEN u.text ELSE tickets.last_end_user_text END, "
        f"last_end_user_message_at = greatest(tickets.last_end_user_message_at, u.last), updated_at = ?, "
        # A message the platform delivers late may predate the ticket: the ticket began with it.
        f"created_at = least(tickets.created_at, u.first), "
        f"channel_info = CASE WHEN u.info IS NULL THEN tickets.channel_info "
        f"ELSE json_merge_patch(tickets.channel_info, u.info::JSON) END "
        f"FROM _ticket_updates u WHERE tickets.id = u.id {_by_id(u['id'] for u in ticket_updates)}", [now, now])
    moved = [u for u in ticket_updates if u["recipient"] is not None]
    if moved:
        con.execute("UPDATE tickets SET recipient = m.recipient FROM (SELECT unnest(?::BIGINT[]) AS id, "
                    f"unnest(?::VARCHAR[]) AS recipient) m WHERE tickets.id = m.id {_by_id(u['id'] for u in moved)}",
                    [[u["id"] for u in moved], [u["recipient"] for u in moved]])


def _by_id(ids: Iterable[int]) -> str:
    """The condition that makes an update of the tickets `ids` find them by their index, when there are few."""
    listed = list(ids)
    return f"AND tickets.id IN {sql_list(listed)}" if len(listed) <= UPDATE_BY_INDEX else ""


def _store_comments(con: duckdb.DuckDBPyConnection, comments: list[dict[str, Any]], now: datetime,
                    events: list[dict[str, Any]]) -> None:
    """The comments, with their ids and comment_added events."""
    comment_ids = next_ids(con, "comment_ids", len(comments))
    for cid, c in zip(comment_ids, comments, strict=True):
        c["id"] = cid
        events.append(event(c["ticket_id"], "comment_added", "end-user", c["author_id"], at=now, comment_id=cid,
                            public=True))
    insert(con, "comments", comments, _COMMENT_SCHEMA)


class Unsolved(NamedTuple):
    """An unsolved ticket a customer's message may continue."""

    channel: str
    account: str
    recipient: str  # the id replies go to
    id: int
    status: str


def _open_tickets(con: duckdb.DuckDBPyConnection, senders: set[Key], users: Mapping[Key, int],
                  new_users: set[Key]) -> dict[Key, Unsolved]:
    """The unsolved ticket each sender continues on its business account (R1, R2).

    Found by the id the customer writes from; for a returning customer without one, by their other ids on
    the account (a phone beside a WhatsApp business-scoped id, an identity merged in): the conversation
    goes on, and replies now go to the id the customer writes from.
    """
    found: dict[Key, Unsolved] = {}
    for ticket in _unsolved_tickets(con, {k[2] for k in senders}):
        if ticket[:3] in senders:
            found[ticket[:3]] = ticket  # the newest unsolved one wins
    returning = [k for k in senders if k not in found and k not in new_users]
    if not returning:
        return found
    # Keyed by user and account: several ids of one user may write in one batch.
    ids: dict[Key, tuple[str, str, int]] = {}  # an id of a returning user's -> (channel, account, user)
    for c, a, pid, uid in con.execute(
            "SELECT channel, account, platform_user_id, user_id FROM identities "
            f"WHERE user_id IN {sql_list({users[k] for k in returning})}").fetchall():
        ids[(c, a, pid)] = (c, a, uid)
    newest: dict[tuple[str, str, int], Unsolved] = {}
    for ticket in _unsolved_tickets(con, {k[2] for k in ids}):
        owner = ids.get(ticket[:3])
        if owner is not None:
            newest[owner] = ticket
    for k in returning:
        latest = newest.get((k[0], k[1], users[k]))
        if latest is not None:
            found[k] = latest
    return found


def _unsolved_tickets(con: duckdb.DuckDBPyConnection, recipients: set[str]) -> list[Unsolved]:
    """The unsolved tickets answered on these ids, oldest first.

    Looked up by recipient alone, and the solved ones dropped here: DuckDB uses the recipient index for an
    IN list by itself, but a status filter beside it makes it scan every ticket (18 ms a round at a million
    tickets, against 1 to 7 ms).
    """
    if not recipients:
        return []
    rows = con.execute("SELECT channel, account, recipient, id, status FROM tickets "
                       f"WHERE recipient IN {sql_list(recipients)} ORDER BY id").fetchall()
    return [Unsolved(*row) for row in rows if row[4] in UNSOLVED]


def _user_ids(con: duckdb.DuckDBPyConnection, keys: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    if not keys:
        return {}
    return {(c, a, u): uid for c, a, u, uid in con.execute(
        "SELECT channel, account, platform_user_id, user_id FROM identities "
        f"WHERE platform_user_id IN {sql_list({k[2] for k in keys})}").fetchall() if (c, a, u) in keys}


def _business_author(con: duckdb.DuckDBPyConnection, channel: str, account: str, now: datetime) -> int:
    """The user business-account messages sent from elsewhere are written by: one per account."""
    marker = f"business:{channel}:{account}"
    row = con.execute("SELECT id FROM users WHERE role = 'agent' AND slack_user_id = ?", [marker]).fetchone()
    if row:
        return int(row[0])
    name = (con.execute("SELECT name FROM accounts WHERE channel = ? AND account = ?", [channel, account]).fetchone()
            or [f"{channels.label(channel)} {account}"])[0]
    (uid,) = next_ids(con, "user_ids", 1)
    insert(con, "users", [{"id": uid, "role": "agent", "name": name, "slack_user_id": marker,
                           "social_messaging_info": "{}", "created_at": now, "updated_at": now}])
    return uid


def _store_business_messages(con: duckdb.DuckDBPyConnection, stored: list[tuple[int, InboundMessage]],
                             now: datetime) -> None:
    """What the business sent outside SocialDesk joins the customer's newest ticket; it opens none.

    The echo of a reply SocialDesk sent itself carries that reply's platform id: it changes nothing.
    """
    ids = {m.message_id for _, m in stored}
    ours = {(c, a, p) for c, a, p in con.execute(
        f"SELECT channel, account, platform_message_id FROM outbox WHERE platform_message_id IN {sql_list(ids)}"
    ).fetchall()}
    messages = [m for _, m in stored if (m.channel, m.account, m.message_id) not in ours]
    users = _user_ids(con, {(m.channel, m.account, u) for m in messages for u in (m.user_id, *m.aliases)})
    comments, events = [], []
    for m in sorted(messages, key=lambda m: m.sent_at):
        uid = next((users[(m.channel, m.account, u)] for u in (m.user_id, *m.aliases)
                    if (m.channel, m.account, u) in users), None)
        row = con.execute("SELECT id FROM tickets WHERE channel = ? AND account = ? AND requester_id = ? "
                          "AND status <> 'closed' ORDER BY id DESC LIMIT 1", [m.channel, m.account, uid]
                          ).fetchone() if uid is not None else None
        if row is None:
            log.info("%s message sent by account %s from %s to a customer with no open ticket: not kept",
                     m.channel, m.account, m.business_origin)
            continue
        author = _business_author(con, m.channel, m.account, now)
        text, _ = redact_cards(m.text)
        comments.append({"ticket_id": row[0], "author_id": author, "public": True, "body": text,
                         "attachments": dumps([a.to_dict() for a in m.attachments]),
                         "platform_message_id": m.message_id, "created_at": _naive(m.sent_at),
                         "origin": m.business_origin})
    for cid, c in zip(next_ids(con, "comment_ids", len(comments)), comments, strict=True):
        c["id"] = cid
        events.append(event(c["ticket_id"], "comment_added", "agent", c["author_id"], at=now, comment_id=cid,
                            public=True, origin=c["origin"]))
    insert(con, "comments", comments)
    record_events(con, events)


def _find_comments(con: duckdb.DuckDBPyConnection, items: list[MessageEdit] | list[MessageWithdrawn]
                   ) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """(channel, account, platform message id) -> (comment id, ticket id, author id) of the customer's messages."""
    ids = {i.message_id for i in items}
    if not ids:
        return {}
    return {(c, a, p): (cid, tid, author) for c, a, p, cid, tid, author in con.execute(
        "SELECT t.channel, t.account, c.platform_message_id, c.id, c.ticket_id, c.author_id FROM comments c "
        f"JOIN tickets t ON t.id = c.ticket_id WHERE c.platform_message_id IN {sql_list(ids)}").fetchall()}


def _unmatched_edits(con: duckdb.DuckDBPyConnection, edits: list[tuple[int, MessageEdit]]
                     ) -> list[tuple[int, InboundMessage]]:
    found = _find_comments(con, [e for _, e in edits])
    return [(n, InboundMessage(e.channel, e.account, e.user_id, f"edit:{e.edit_id}", e.at,
                               f"✏️ edited a message: {e.text}" if e.text else "✏️ edited a message",
                               e.attachments))
            for n, e in edits if (e.channel, e.account, e.message_id) not in found]


def _record_edits(con: duckdb.DuckDBPyConnection, edits: list[tuple[int, MessageEdit]], now: datetime) -> None:
    """The original stays as it was; the new text is an event on the comment."""
    found = _find_comments(con, [e for _, e in edits])
    events = []
    for _, e in edits:
        hit = found.get((e.channel, e.account, e.message_id))
        if hit is not None:
            cid, tid, author = hit
            text, _ = redact_cards(e.text)
            events.append(event(tid, "comment_edited", "end-user", author, at=now, comment_id=cid, text=text,
                                attachments=[a.to_dict() for a in e.attachments], edited_at=_naive(e.at)))
    record_events(con, events)


def _record_withdrawals(con: duckdb.DuckDBPyConnection, withdrawals: list[tuple[int, MessageWithdrawn]],
                        now: datetime) -> None:
    """An unsent message stays for the record, marked withdrawn by the customer."""
    found = _find_comments(con, [w for _, w in withdrawals])
    events = []
    for _, w in withdrawals:
        hit = found.get((w.channel, w.account, w.message_id))
        if hit is None:
            log.info("%s: the customer withdrew message %s, which was never received", w.channel, w.message_id)
            continue
        cid, tid, author = hit
        con.execute("UPDATE comments SET withdrawn_at = ? WHERE id = ? AND withdrawn_at IS NULL",
                    [_naive(w.at), cid])
        events.append(event(tid, "comment_withdrawn", "end-user", author, at=now, comment_id=cid,
                            withdrawn_at=_naive(w.at)))
    record_events(con, events)


def _quoted(con: duckdb.DuckDBPyConnection, reactions: list[InboundMessage]) -> dict[tuple[str, str, str], str]:
    """The text of the messages these reactions are to: the customer's own, or a reply of ours."""
    if not reactions:
        return {}
    ids = {m.reply_to for m in reactions if m.reply_to}
    found: dict[tuple[str, str, str], str] = {}
    for channel, account, pmid, body in con.execute(
            "SELECT t.channel, t.account, c.platform_message_id, c.body FROM comments c "
            "JOIN tickets t ON t.id = c.ticket_id "
            f"WHERE c.platform_message_id IN {sql_list(ids)} "
            "UNION ALL SELECT channel, account, platform_message_id, body FROM outbox "
            f"WHERE platform_message_id IN {sql_list(ids)}").fetchall():
        found[(channel, account, pmid)] = body
    return found


def _body(m: InboundMessage, quotes: dict[tuple[str, str, str], str]) -> str:
    """The comment's text; a reaction says what it was to."""
    if m.reaction is None:
        return m.text
    quoted = quotes.get((m.channel, m.account, m.reply_to or ""))
    to = f"to: {_quote(quoted)}" if quoted else "to a message"
    return f"reacted {m.reaction} {to}" if m.reaction else f"removed their reaction {to.replace('to', 'from', 1)}"


PREVIEW_CHARS = 200  # of the customer's last message, on the ticket for the rows agents scan


def _preview(m: InboundMessage, quotes: dict[tuple[str, str, str], str]) -> str:
    text, _ = redact_cards(_body(m, quotes))
    return text[:PREVIEW_CHARS]


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return f"“{text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 1] + '…'}”"


_COMMENT_SCHEMA = pa.schema([("ticket_id", pa.int64()), ("author_id", pa.int64()), ("public", pa.bool_()),
                             ("body", pa.string()), ("attachments", pa.string()),
                             ("platform_message_id", pa.string()), ("created_at", pa.timestamp("us")),
                             ("id", pa.int64())])


def apply_receipt(con: duckdb.DuckDBPyConnection, receipt: StatusUpdate, now: datetime) -> int:
    """A delivery, read or failure receipt moves matching replies forward (B2); returns how many changed.

    States only move forward (sent < delivered < read < played), so a redelivered receipt changes
    nothing. The price the platform puts on a message is kept whatever the state.
    """
    rank = DELIVERY_RANK.get(receipt.status, 0)
    if receipt.outbox_id is not None and receipt.message_id and receipt.status != "failed":
        _sent_after_all(con, receipt, now)
    params: list[Any]
    if receipt.message_id:
        where, params = "platform_message_id = ?", [receipt.message_id]
    elif receipt.watermark is not None:
        where, params = "recipient = ? AND sent_at <= ?", [receipt.user_id, _naive(receipt.watermark)]
    else:
        return 0
    if receipt.pricing and receipt.message_id:
        con.execute(f"UPDATE outbox SET pricing = ? WHERE channel = ? AND account = ? AND {where}",
                    [dumps(receipt.pricing), receipt.channel, receipt.account, *params])
    if receipt.status == "failed":
        state_filter = "state IN ('sent', 'delivered')"
    else:
        state_filter = "state IN ('sent', 'delivered', 'read', 'played') AND " + (
            "CASE state WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 ELSE 4 END < ?")
        params = [*params, rank]
    at = _naive(receipt.at)
    rows = con.execute(
        f"UPDATE outbox SET state = ?, updated_at = ?, "
        f"delivered_at = CASE WHEN ? IN ('delivered', 'read', 'played') THEN coalesce(delivered_at, ?) "
        f"ELSE delivered_at END, "
        f"read_at = CASE WHEN ? IN ('read', 'played') THEN coalesce(read_at, ?) ELSE read_at END, "
        f"played_at = CASE WHEN ? = 'played' THEN ? ELSE played_at END, "
        f"last_error = CASE WHEN ? = 'failed' THEN ? ELSE last_error END "
        f"WHERE channel = ? AND account = ? AND {where} AND {state_filter} RETURNING id, ticket_id",
        [receipt.status, now, receipt.status, at, receipt.status, at, receipt.status, at, receipt.status,
         receipt.error, receipt.channel, receipt.account, *params]).fetchall()
    if not rows and receipt.message_id and _unknown_reply(con, receipt):
        _keep_early(con, receipt, at, now)
    record_events(con, [event(tid, f"reply_{receipt.status}", "system", at=now, outbox_id=oid,
                              error=receipt.error, platform_time=at.isoformat())
                        for oid, tid in rows])
    return len(rows)


def _sent_after_all(con: duckdb.DuckDBPyConnection, receipt: StatusUpdate, now: datetime) -> None:
    """The platform took a reply whose send we saw fail (a timeout after it arrived, a crash mid-send):
    it is sent, with the platform's id, and the outbox will not send it a second time."""
    rows = con.execute(
        "UPDATE outbox SET state = 'sent', platform_message_id = ?, sent_at = ?, updated_at = ?, "
        "next_attempt_at = NULL, attempts = attempts + 1 WHERE id = ? AND channel = ? AND account = ? "
        "AND state = 'queued' RETURNING id, ticket_id",
        [receipt.message_id, _naive(receipt.at), now, receipt.outbox_id, receipt.channel, receipt.account]).fetchall()
    record_events(con, [event(tid, "reply_sent", "system", at=now, outbox_id=oid,
                              platform_message_id=receipt.message_id, recovered_from="a status webhook")
                        for oid, tid in rows])


EARLY_RECEIPT_DAYS = 1


def _unknown_reply(con: duckdb.DuckDBPyConnection, receipt: StatusUpdate) -> bool:
    return bool(scalar(con, "SELECT count(*) = 0 FROM outbox WHERE channel = ? AND account = ? "
                            "AND platform_message_id = ?", [receipt.channel, receipt.account, receipt.message_id]))


def _keep_early(con: duckdb.DuckDBPyConnection, receipt: StatusUpdate, at: datetime, now: datetime) -> None:
    con.execute("DELETE FROM early_receipts WHERE received_at < ?", [now - timedelta(days=EARLY_RECEIPT_DAYS)])
    con.execute("INSERT INTO early_receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [receipt.channel, receipt.account, receipt.message_id, receipt.user_id, receipt.status, at,
                 receipt.error, now, dumps(receipt.pricing) if receipt.pricing else None])


def apply_early_receipts(con: duckdb.DuckDBPyConnection, channel: str, account: str, platform_message_id: str,
                         now: datetime) -> int:
    """A reply just recorded as sent takes the receipts that arrived before that record (B2)."""
    rows = con.execute("DELETE FROM early_receipts WHERE channel = ? AND account = ? AND platform_message_id = ? "
                       "RETURNING user_id, status, platform_at, error, pricing",
                       [channel, account, platform_message_id]).fetchall()
    changed = 0
    for user_id, status, at, error, pricing in sorted(rows, key=lambda r: (r[2], DELIVERY_RANK.get(r[1], 5))):
        changed += apply_receipt(con, StatusUpdate(channel, account, user_id, status, at,
                                                   message_id=platform_message_id, error=error,
                                                   pricing=json.loads(pricing) if pricing else None), now)
    return changed
