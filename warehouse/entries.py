"""What the log keeps of one webhook: its verified raw body and its parsed items, encoded with msgspec's
msgpack into fixed types (never pickle). The same bytes cross the webhook workers' socket, so the store
process appends what a worker parsed without decoding it. No DuckDB here: a webhook worker imports
this, and nothing of the store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from warehouse.model import Delivery, InboundMessage, Item, MessageEdit, MessageWithdrawn, StatusUpdate


@dataclass(slots=True)
class Entry:
    """One webhook (or one import) as logged: the verified raw body and its parsed items, encoded."""

    channel: str
    raw: bytes | None
    items: bytes
    skipped: int = 0


@dataclass(slots=True)
class _Escaped:
    kind: str
    json: str


@dataclass(slots=True)
class _Items:
    # Ingestion takes messages, then edits and withdrawals, then receipts, whatever their order in the
    # webhook, so grouping them by kind loses nothing.
    messages: list[InboundMessage] = field(default_factory=list)
    edits: list[MessageEdit] = field(default_factory=list)
    withdrawals: list[MessageWithdrawn] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    # Items msgpack cannot hold (text with a lone UTF-16 surrogate, which no UTF-8 can): JSON with
    # \u escapes, which keeps them exactly, so they can fail in processing and be dead-lettered.
    escaped: list[_Escaped] = field(default_factory=list)


KINDS: dict[type, str] = {InboundMessage: "message", MessageEdit: "edit", MessageWithdrawn: "withdrawal",
                          StatusUpdate: "status"}
_TYPES = {kind: t for t, kind in KINDS.items()}
_encode = msgspec.msgpack.Encoder().encode
_decode_items = msgspec.msgpack.Decoder(_Items).decode


def _group(items: Sequence[Item]) -> _Items:
    grouped = _Items()
    lists = {InboundMessage: grouped.messages, MessageEdit: grouped.edits, MessageWithdrawn: grouped.withdrawals,
             StatusUpdate: grouped.statuses}
    for item in items:
        lists[type(item)].append(item)  # type: ignore[attr-defined]
    return grouped


def item_json(item: Item) -> str:
    """An item as ASCII JSON: readable in `socialdesk dead-letters`, exact (lone surrogates as \\u escapes)."""
    return json.dumps({"kind": KINDS[type(item)], **msgspec.to_builtins(item)}, ensure_ascii=True, default=repr)


def item_from_json(text: str) -> Item:
    data = json.loads(text)
    return msgspec.convert({k: v for k, v in data.items() if k != "kind"}, _TYPES[data["kind"]])


def encode_items(items: Sequence[Item]) -> bytes:
    try:
        return _encode(_group(items))
    except (UnicodeEncodeError, TypeError, ValueError):
        # One item cannot be encoded: it alone is escaped, its siblings stay as they are.
        plain, escaped = [], []
        for item in items:
            try:
                _encode(item)
                plain.append(item)
            except (UnicodeEncodeError, TypeError, ValueError):
                escaped.append(_Escaped(KINDS[type(item)], item_json(item)))
        grouped = _group(plain)
        grouped.escaped = escaped
        return _encode(grouped)


def decode_items(blob: bytes) -> list[Item]:
    g = _decode_items(blob)
    return [*g.messages, *g.edits, *g.withdrawals, *g.statuses, *(item_from_json(e.json) for e in g.escaped)]


def entry_of(delivery: Delivery) -> Entry:
    return Entry(delivery.channel, delivery.raw, encode_items(delivery.items), delivery.skipped)
