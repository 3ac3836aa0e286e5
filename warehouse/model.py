"""The normalized shapes that cross the warehouse boundary.

Connectors turn each platform's payload into these; the warehouse stores them. Nothing here knows
a platform's wire format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from warehouse import channels

# R7: every social ticket carries this tag beside its channel's (warehouse.channels).
SOCIAL_TAG = "messaging_support"
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
UNSOLVED = ("new", "open", "pending", "hold")
# "played": a voice message was listened to (WhatsApp); it comes after "read".
DeliveryState = Literal["sent", "delivered", "read", "played", "failed"]


class InvalidMessage(ValueError):
    """A normalized message that cannot be stored as it is (missing key, unknown channel, ...)."""


@dataclass(frozen=True, slots=True)
class Attachment:
    type: str  # image, file, audio, video, sticker, location
    media_id: str | None = None
    url: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    caption: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message in a conversation, keyed by (channel, account, message_id).

    Most are the end user's. With `business_origin` (where it was sent from, e.g. "the WhatsApp
    Business app") it is a message the business sent outside SocialDesk to the end user `user_id`: it
    joins that user's ticket as the business account's comment and never opens a ticket; the echo of
    a reply SocialDesk sent itself changes nothing.
    `aliases` are other platform ids the same end user was known by on this account (a WhatsApp phone
    number beside the business-scoped user id). `reaction` (an emoji, "" for a removed reaction) and
    `reply_to` (the platform id of the message quoted or reacted to) let the desk say what a reaction
    was to. `channel_info` is what the message says about the conversation (an ad referral) and is
    merged into the ticket's "Social messaging channel info" (R8).
    """

    channel: str
    account: str  # business account platform id: phone_number_id, page id, bot user id, gh_..., user id
    user_id: str  # the end user's platform id
    message_id: str
    sent_at: datetime
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    profile: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    business_origin: str | None = None
    reply_to: str | None = None
    reaction: str | None = None
    channel_info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InboundMessage:
        """The JSON form used by `socialdesk ingest` (issue 2)."""
        if not isinstance(data, dict):
            raise InvalidMessage("a message must be a JSON object")
        missing = [k for k in ("channel", "account", "user_id", "message_id") if not data.get(k)]
        if missing:
            raise InvalidMessage(f"missing {', '.join(missing)}")
        channel = str(data["channel"])
        try:
            channels.get(channel)
        except channels.UnknownChannel as exc:
            raise InvalidMessage(str(exc)) from None
        try:
            sent_at = parse_time(data.get("sent_at")) if data.get("sent_at") else datetime.now(UTC)
            attachments = tuple(Attachment(**a) for a in data.get("attachments") or ())
        except (TypeError, ValueError) as exc:
            raise InvalidMessage(str(exc)) from exc
        profile = data.get("profile") or {}
        if not isinstance(profile, dict):
            raise InvalidMessage("profile must be an object")
        return cls(channel, str(data["account"]), str(data["user_id"]), str(data["message_id"]), sent_at,
                   str(data.get("text") or ""), attachments, profile)

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "account": self.account, "user_id": self.user_id,
                "message_id": self.message_id, "sent_at": self.sent_at.isoformat(), "text": self.text,
                "attachments": [a.to_dict() for a in self.attachments], "profile": self.profile}


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A delivery, read or failure receipt for one of our replies (B2).

    Either `message_id` names the reply (WhatsApp statuses, Messenger delivery `mids`), or
    `watermark` says everything sent to `user_id` up to then has reached that state (Messenger
    watermarks, X read events). `pricing` is what the platform says the message costs (WhatsApp's
    `pricing`: category, billable, pricing_model).
    """

    channel: str
    account: str
    user_id: str
    status: DeliveryState
    at: datetime
    message_id: str | None = None
    watermark: datetime | None = None
    error: str | None = None
    pricing: dict[str, Any] | None = None
    # Our outbox row, when the send carried it and the platform echoes it (WhatsApp's
    # biz_opaque_callback_data): a receipt for a reply whose send timed out after the platform took it.
    outbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class MessageEdit:
    """The end user edited message `message_id`; `edit_id` keys this edit (replays change nothing).

    The original comment is kept; the new text is recorded as an edit event on it.
    """

    channel: str
    account: str
    user_id: str
    message_id: str
    edit_id: str
    at: datetime
    text: str = ""
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class MessageWithdrawn:
    """The end user unsent (revoked, deleted for everyone) message `message_id`: the comment is kept for
    the record and marked withdrawn."""

    channel: str
    account: str
    user_id: str
    message_id: str
    at: datetime


Item = InboundMessage | StatusUpdate | MessageEdit | MessageWithdrawn


def parse_time(value: Any) -> datetime:
    """ISO 8601 text or a datetime, as an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def from_unix(seconds: float | str) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def from_unix_ms(ms: float | str) -> datetime:
    return datetime.fromtimestamp(float(ms) / 1000, UTC)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(slots=True)
class Delivery:
    """What one webhook request (or one line of an import) carried."""

    items: list[Item]
    channel: str = ""
    raw: bytes | None = None
    skipped: int = 0  # entries of the body the connector did not understand (the raw body is kept for them)
