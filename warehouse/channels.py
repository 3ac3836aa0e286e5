"""The channels the desk knows, as plain data: name, tag (R7), label, messaging window (R22, B1).

Each channel's module in `connectors/` declares its `Channel`; `connectors.registry` registers them here
when it is imported (the service, the CLI, the workers, the sandbox and the notebooks all import it).
The warehouse reads this table and nothing else about channels: it never imports `connectors`
(design.md: `bot` -> `connectors` -> `warehouse`), so no module here names a channel.

Everything here is data: no behaviour, no platform wire format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


class UnknownChannel(ValueError):
    """A channel name no registered channel has."""


@dataclass(frozen=True, slots=True)
class Window:
    """How long after the end user's last message the channel takes a free-form reply, and what it still
    takes after that (B1)."""

    hours: int
    # A business account flagged in its channel info (`flag`) may still answer for `tagged_hours`, with
    # the platform's `tag` (Meta's HUMAN_AGENT, 7 days, for accounts with the Human Agent permission).
    tag: str | None = None
    tagged_hours: int = 0
    flag: str = ""
    # Approved message templates still reach the customer after the window (WhatsApp).
    templates: bool = False


@dataclass(frozen=True, slots=True)
class DemoUserIds:
    """How the demo's end users' platform ids look, from their number `j`: `prefix` then either a number
    (`start + j`, zero-padded to `width`) or, with `hashed`, that many hex digits of a hash of `j` and
    the seed (ids that look random, like LINE's and WeChat's). Data, not SQL: the warehouse writes it."""

    prefix: str = ""
    start: int = 0
    width: int = 0
    hashed: int = 0
    salt: str = ""


@dataclass(frozen=True, slots=True)
class DemoProfile:
    """How `warehouse.demo_data` invents this channel's traffic."""

    accounts: tuple[tuple[str, str, float], ...]  # (account id, name, share of all the traffic)
    user_ids: DemoUserIds
    message_id_prefix: str = "mid.demo"
    reply_hours: float = 2.0  # mean time to the first reply: fast channels are answered faster
    phones: bool = False  # every end user has a phone number (and twins share one, R4, B5)


@dataclass(frozen=True, slots=True)
class Channel:
    """Everything outside a channel's own module knows about it."""

    name: str  # as tickets, identities and configuration sections say it
    tag: str  # R7: the tag its tickets carry (Messenger's is `facebook`, X's `twitter`)
    label: str  # for people: "WhatsApp", "Messenger"
    icon: str  # Slack: a monochrome squared letter (never a coloured circle: those are statuses)
    abbreviation: str  # the CLI's column
    # What people call one business account of the channel ("the Page can no longer answer").
    account_noun: str = "account"
    window: Window | None = None  # None: the channel takes a reply any time
    # Zendesk's via types and ids for this channel, as its exported rules write them.
    zendesk_via: tuple[str | int, ...] = ()
    # Its receipts say what each reply cost (WhatsApp's `pricing`): the costs reports read them.
    priced_replies: bool = False
    demo: DemoProfile | None = field(default=None, compare=False)


_CHANNELS: dict[str, Channel] = {}


def register(channels: Iterable[Channel]) -> None:
    """Make these channels known, in this order (the order lists and reports show them in)."""
    for channel in channels:
        _CHANNELS[channel.name] = channel


def every() -> list[Channel]:
    if not _CHANNELS:
        raise UnknownChannel("no channel is registered: import connectors.registry first (it registers them)")
    return list(_CHANNELS.values())


def names() -> list[str]:
    return [c.name for c in every()]


def tags() -> list[str]:
    return [c.tag for c in every()]


def get(name: str) -> Channel:
    try:
        return _CHANNELS[name]
    except KeyError:
        raise UnknownChannel(f"unknown channel {name!r} (one of {', '.join(names())})") from None


def find(name: str) -> Channel | None:
    """The channel, or None for a name no channel has (a store written by another version)."""
    return _CHANNELS.get(name)


def label(name: str) -> str:
    found = _CHANNELS.get(name)
    return found.label if found else name


def by_tag_or_name(value: str) -> Channel | None:
    """`messenger` or `facebook`, `x` or `twitter`: the channel either names."""
    return _CHANNELS.get(value) or next((c for c in _CHANNELS.values() if c.tag == value), None)
