"""The one ingestion path: normalized inbound messages and receipts into tickets (R1, R2, R4, R6-R8, B2, B4).

Webhooks and `socialdesk ingest` both end here. A batch is handled set-based: a fixed number of
statements whatever its size, so group commit makes ingestion fast. Replays are harmless: every
message is keyed by (channel, business account, platform message id) and a key seen before is
skipped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from warehouse import clock
from warehouse.model import (
    CHANNEL_LABELS,
    CHANNEL_TAGS,
    SOCIAL_TAG,
    UNSOLVED,
    InboundMessage,
    StatusUpdate,
    dumps,
)
from warehouse.phones import to_e164
from warehouse.redact import redact_cards
from warehouse.rows import arrow, event, insert, next_ids, record_events, sql_list

DELIVERY_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


@dataclass(slots=True)
class Delivery:
    """What one webhook request (or one line of an import) carried."""

    items: list[InboundMessage | StatusUpdate]
    channel: str = ""
    raw: bytes | None = None


@dataclass(slots=True)
class IngestResult:
    stored: int = 0  # new messages stored
    duplicates: int = 0  # messages seen before (replays, redeliveries)
    receipts: int = 0  # receipts that changed a reply's state
    created_tickets: list[int] = field(default_factory=list)
    updated_tickets: list[int] = field(default_factory=list)


def ingest_batch(con: duckdb.DuckDBPyConnection, deliveries: list[Delivery]) -> list[IngestResult]:
    """Store everything `deliveries` carried in the caller's transaction; one result per delivery."""
    now = clock.now()
    results = [IngestResult() for _ in deliveries]
    raws = [d for d in deliveries if d.raw is not None]
    if raws:
        ids = next_ids(con, "inbox_ids", len(raws))
        insert(con, "inbox", [{"id": i, "channel": d.channel, "received_at": now, "body": d.raw}
                              for i, d in zip(ids, raws, strict=True)])

    fresh: list[tuple[int, InboundMessage]] = []
    seen: set[tuple[str, str, str]] = set()
    for n, d in enumerate(deliveries):
        for item in d.items:
            if not isinstance(item, InboundMessage):
                continue
            key = (item.channel, item.account, item.message_id)
            if key in seen:
                results[n].duplicates += 1
                continue
            seen.add(key)
            fresh.append((n, item))
    if fresh:
        keys = [{"channel": m.channel, "account": m.account, "message_id": m.message_id} for _, m in fresh]
        # Row sets are local Arrow tables DuckDB finds by name (replacement scans; see rows.insert).
        _keys = arrow(keys)  # noqa: F841
        new = set(con.execute("INSERT INTO inbound_keys SELECT * FROM _keys ON CONFLICT DO NOTHING "
                              "RETURNING channel, account, message_id").fetchall())
        stored = []
        for n, m in fresh:
            if (m.channel, m.account, m.message_id) in new:
                stored.append((n, m))
                results[n].stored += 1
            else:
                results[n].duplicates += 1
        if stored:
            _store_messages(con, stored, results, now)

    receipts = [(n, s) for n, d in enumerate(deliveries) for s in d.items if isinstance(s, StatusUpdate)]
    for n, status in receipts:
        results[n].receipts += apply_receipt(con, status, now)
    return results


def _naive(dt: datetime) -> datetime:
    return clock.naive_utc(dt)


def _identity_key(m: InboundMessage) -> tuple[str, str, str]:
    return (m.channel, m.account, m.user_id)


def _display_name(m: InboundMessage) -> str:
    name = m.profile.get("name") or m.profile.get("screen_name")
    if name:
        return str(name)
    phone = to_e164(m.profile.get("phone"))
    return f"{CHANNEL_LABELS[m.channel]} user {phone or m.user_id[-8:]}"


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
    messages = [m for _, m in stored]
    events: list[dict[str, Any]] = []

    # End users: one per (channel, business account, platform user) (R4).
    idents = sorted({_identity_key(m) for m in messages})
    wanted = set(idents)
    known: dict[tuple[str, str, str], int] = {}
    stored_profiles: dict[tuple[str, str, str], str] = {}
    for c, a, u, uid, profile in con.execute(
            "SELECT channel, account, platform_user_id, user_id, profile FROM identities "
            f"WHERE platform_user_id IN {sql_list({k[2] for k in idents})}").fetchall():
        if (c, a, u) in wanted:
            known[(c, a, u)] = uid
            stored_profiles[(c, a, u)] = profile
    latest: dict[tuple[str, str, str], InboundMessage] = {}
    for m in sorted(messages, key=lambda m: m.sent_at):
        latest[_identity_key(m)] = m
    missing = [k for k in idents if k not in known]
    new_users, new_idents = [], []
    for uid, key in zip(next_ids(con, "user_ids", len(missing)), missing, strict=True):
        m = latest[key]
        known[key] = uid
        new_users.append({"id": uid, "role": "end-user", "name": _display_name(m),
                          "phone": to_e164(m.profile.get("phone")), "social_messaging_info": dumps(_social_info(m)),
                          "created_at": now, "updated_at": now})
        new_idents.append({"channel": key[0], "account": key[1], "platform_user_id": key[2], "user_id": uid,
                           "profile": dumps(m.profile), "created_at": now})
        events.append(event(None, "user_created", "system", user_id=uid, at=now, channel=key[0], account=key[1]))
    insert(con, "users", new_users)
    insert(con, "identities", new_idents)
    # Returning users mostly send the same profile again: only a changed one is written.
    updates = [{"id": known[k], "patch": dumps(_social_info(m)), "phone": to_e164(m.profile.get("phone")),
                "name": m.profile.get("name"), "profile": dumps(m.profile), "channel": k[0], "account": k[1],
                "platform_user_id": k[2]}
               for k, m in latest.items()
               if k not in missing and m.profile and _changes(stored_profiles.get(k), m.profile)]
    if updates:
        _updates = arrow(updates)  # noqa: F841
        con.execute(f"UPDATE users SET social_messaging_info = json_merge_patch(users.social_messaging_info, "
                    f"u.patch::JSON), phone = coalesce(users.phone, u.phone), "
                    f"name = coalesce(u.name, users.name), updated_at = ? FROM _updates u "
                    f"WHERE users.id = u.id AND users.id IN {sql_list(u['id'] for u in updates)}", [now])
        con.execute(f"UPDATE identities SET profile = json_merge_patch(identities.profile, u.profile::JSON) "
                    f"FROM _updates u WHERE identities.channel = u.channel AND identities.account = u.account "
                    f"AND identities.platform_user_id = u.platform_user_id "
                    f"AND identities.platform_user_id IN {sql_list(u['platform_user_id'] for u in updates)}")

    # Tickets: the end user's unsolved ticket on that business account, else a new one (R1, R2).
    groups: dict[tuple[str, str, str], list[tuple[int, InboundMessage]]] = defaultdict(list)
    for n, m in sorted(stored, key=lambda nm: nm[1].sent_at):
        groups[_identity_key(m)].append((n, m))
    open_tickets: dict[tuple[str, str, str], tuple[int, str]] = {}
    for c, a, r, tid, status in con.execute(
            f"SELECT channel, account, recipient, id, status FROM tickets WHERE status IN {UNSOLVED} "
            f"AND recipient IN {sql_list({k[2] for k in groups})} ORDER BY id").fetchall():
        if (c, a, r) in groups:
            open_tickets[(c, a, r)] = (tid, status)  # the newest unsolved one wins
    account_info = {(c, a): json.loads(info) for c, a, info in con.execute(
        "SELECT channel, account, info FROM accounts").fetchall()}

    to_create = [k for k in groups if k not in open_tickets]
    new_ids = dict(zip(to_create, next_ids(con, "ticket_ids", len(to_create)), strict=True))
    new_tickets, ticket_updates, comments = [], [], []
    for key, items in groups.items():
        channel, account, recipient = key
        first, last = _naive(items[0][1].sent_at), _naive(items[-1][1].sent_at)
        if key in new_ids:
            tid = new_ids[key]
            status = "new" if len(items) == 1 else "open"
            info = account_info.get((channel, account)) or {"channel": channel, "account": account}
            name = _display_name(items[0][1])
            new_tickets.append({
                "id": tid, "status": status, "requester_id": known[key], "channel": channel, "account": account,
                "recipient": recipient, "subject": f"{CHANNEL_LABELS[channel]} conversation with {name}",
                "tags": [CHANNEL_TAGS[channel], SOCIAL_TAG], "channel_info": dumps(info), "custom_fields": "{}",
                "end_user_messages": len(items), "created_at": first, "updated_at": now,
                "status_changed_at": now, "last_end_user_message_at": last})
            events.append(event(tid, "ticket_created", "end-user", known[key], at=now, channel=channel,
                                account=account, status="new"))
            if status == "open":
                events.append(event(tid, "status_changed", "end-user", known[key], at=now, previous="new",
                                    status="open"))
            results[items[0][0]].created_tickets.append(tid)
        else:
            tid, status = open_tickets[key]
            ticket_updates.append({"id": tid, "count": len(items), "last": last})
            if status != "open":
                events.append(event(tid, "status_changed", "end-user", known[key], at=now, previous=status,
                                    status="open"))
            results[items[0][0]].updated_tickets.append(tid)
        for _, m in items:
            text, redacted = redact_cards(m.text)
            caption_redactions = 0
            attachments = []
            for a in m.attachments:
                d = a.to_dict()
                if a.caption:
                    d["caption"], c = redact_cards(a.caption)
                    caption_redactions += c
                attachments.append(d)
            comments.append({"ticket_id": tid, "author_id": known[key], "public": True, "body": text,
                             "attachments": dumps(attachments), "platform_message_id": m.message_id,
                             "created_at": _naive(m.sent_at)})
            if redacted or caption_redactions:
                events.append(event(tid, "card_number_redacted", "system", at=now, message_id=m.message_id,
                                    count=redacted + caption_redactions))
    insert(con, "tickets", new_tickets)
    if ticket_updates:
        _ticket_updates = arrow(ticket_updates)  # noqa: F841
        con.execute(
            f"UPDATE tickets SET status = 'open', "
            f"status_changed_at = CASE WHEN tickets.status <> 'open' THEN ?::TIMESTAMP "
            f"ELSE tickets.status_changed_at END, end_user_messages = end_user_messages + u.count, "
            f"last_end_user_message_at = greatest(tickets.last_end_user_message_at, u.last), updated_at = ? "
            f"FROM _ticket_updates u WHERE tickets.id = u.id "
            f"AND tickets.id IN {sql_list(u['id'] for u in ticket_updates)}", [now, now])
    comment_ids = next_ids(con, "comment_ids", len(comments))
    for cid, c in zip(comment_ids, comments, strict=True):
        c["id"] = cid
        events.append(event(c["ticket_id"], "comment_added", "end-user", c["author_id"], at=now, comment_id=cid,
                            public=True))
    insert(con, "comments", comments, _COMMENT_SCHEMA)
    record_events(con, events)


_COMMENT_SCHEMA = pa.schema([("ticket_id", pa.int64()), ("author_id", pa.int64()), ("public", pa.bool_()),
                             ("body", pa.string()), ("attachments", pa.string()),
                             ("platform_message_id", pa.string()), ("created_at", pa.timestamp("us")),
                             ("id", pa.int64())])


def apply_receipt(con: duckdb.DuckDBPyConnection, receipt: StatusUpdate, now: datetime) -> int:
    """A delivery, read or failure receipt moves matching replies forward (B2); returns how many changed.

    States only move forward (sent < delivered < read), so a redelivered receipt changes nothing.
    """
    rank = DELIVERY_RANK.get(receipt.status, 0)
    if receipt.message_id:
        where, params = "platform_message_id = ?", [receipt.message_id]
    elif receipt.watermark is not None:
        where, params = "recipient = ? AND sent_at <= ?", [receipt.user_id, _naive(receipt.watermark)]
    else:
        return 0
    if receipt.status == "failed":
        state_filter = "state IN ('sent', 'delivered')"
    else:
        state_filter = "state IN ('sent', 'delivered', 'read') AND " + (
            "CASE state WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 ELSE 3 END < ?")
        params = [*params, rank]
    at = _naive(receipt.at)
    rows = con.execute(
        f"UPDATE outbox SET state = ?, updated_at = ?, "
        f"delivered_at = CASE WHEN ? IN ('delivered', 'read') THEN coalesce(delivered_at, ?) ELSE delivered_at END, "
        f"read_at = CASE WHEN ? = 'read' THEN ? ELSE read_at END, "
        f"last_error = CASE WHEN ? = 'failed' THEN ? ELSE last_error END "
        f"WHERE channel = ? AND account = ? AND {where} AND {state_filter} RETURNING id, ticket_id",
        [receipt.status, now, receipt.status, at, receipt.status, at, receipt.status, receipt.error,
         receipt.channel, receipt.account, *params]).fetchall()
    if not rows and receipt.message_id and _unknown_reply(con, receipt):
        _keep_early(con, receipt, at, now)
    record_events(con, [event(tid, f"reply_{receipt.status}", "system", at=now, outbox_id=oid,
                              error=receipt.error, platform_time=at.isoformat())
                        for oid, tid in rows])
    return len(rows)


EARLY_RECEIPT_DAYS = 1


def _unknown_reply(con: duckdb.DuckDBPyConnection, receipt: StatusUpdate) -> bool:
    return con.execute("SELECT count(*) FROM outbox WHERE channel = ? AND account = ? AND platform_message_id = ?",
                       [receipt.channel, receipt.account, receipt.message_id]).fetchone()[0] == 0


def _keep_early(con: duckdb.DuckDBPyConnection, receipt: StatusUpdate, at: datetime, now: datetime) -> None:
    con.execute("DELETE FROM early_receipts WHERE received_at < ?", [now - timedelta(days=EARLY_RECEIPT_DAYS)])
    con.execute("INSERT INTO early_receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [receipt.channel, receipt.account, receipt.message_id, receipt.user_id, receipt.status, at,
                 receipt.error, now])


def apply_early_receipts(con: duckdb.DuckDBPyConnection, channel: str, account: str, platform_message_id: str,
                         now: datetime) -> int:
    """A reply just recorded as sent takes the receipts that arrived before that record (B2)."""
    rows = con.execute("DELETE FROM early_receipts WHERE channel = ? AND account = ? AND platform_message_id = ? "
                       "RETURNING user_id, status, platform_at, error",
                       [channel, account, platform_message_id]).fetchall()
    changed = 0
    for user_id, status, at, error in sorted(rows, key=lambda r: (r[2], DELIVERY_RANK.get(r[1], 4))):
        changed += apply_receipt(con, StatusUpdate(channel, account, user_id, status, at,
                                                   message_id=platform_message_id, error=error), now)
    return changed
