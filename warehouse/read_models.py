"""The read models: the shapes the desk hands to its callers (the Slack app, the CLI, the notebooks).

`Desk.ticket`, `Desk.user`, `Desk.notifier`, `Desk.view` and `Desk.search` (built in
`warehouse.queries`) return these. They are TypedDicts: at run time plain JSON-ready dicts (the CLI
prints them, the admin route sends them, tests read them), and to mypy shapes whose keys are checked
where they are built and where they are read. Times are ISO 8601 strings. Parts few callers read (a
ticket's fields, an event's data, an identity's profile, a view's conditions) stay `dict[str, Any]`.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Window(TypedDict):
    """A ticket's messaging window (R22, B1), as `warehouse.tickets.window_state` gives it."""

    has_window: bool
    open: bool
    seconds_left: int | None  # None on channels without a window
    templates: bool  # approved templates still go out when it is closed (WhatsApp)
    window_hours: NotRequired[int]  # only on channels with a window
    # Only past the free-form window on an account allowed the channel's tag (Meta's HUMAN_AGENT):
    tag: NotRequired[str]
    channel: NotRequired[str]


# -- rows: the notifier, views, search -------------------------------------------------------------

class RowRequester(TypedDict):
    id: int
    name: str | None


class TicketRow(TypedDict):
    """One ticket in a list (the notifier's tabs, a view's page, search), from `queries.ticket_row`."""

    id: int
    status: str
    channel: str
    account: str
    account_name: str | None
    requester: RowRequester
    subject: str
    assignee_id: int | None
    updated_at: str
    conversation_status: str  # R13: "Started a new chat" or "Replied to the conversation"
    preview: str | None  # the start of the customer's last message
    waiting_seconds: int | None  # how long the customer has waited for an agent, if they are
    window: Window


class ViewPage(TypedDict):
    """One page of a view (R16, R18, R19)."""

    view: str  # its title
    page: int
    has_more: bool
    tickets: list[TicketRow]


class NotifierTab(TypedDict):
    """One tab of the notifier, the App Home (R10-R16)."""

    tab: str  # "assigned" or "unassigned"
    view: str
    red_dot: bool  # R15: new unassigned social tickets wait
    has_more: bool
    page: int
    tickets: list[TicketRow]


class UserSummary(TypedDict):
    """An end user found by search, with all their tickets."""

    id: int
    name: str | None
    phone: str | None
    ticket_ids: list[int]


class SearchResult(TypedDict):
    """R25-R27: end users by phone or social messaging info, tickets by channel info."""

    query: str
    phone: str | None  # the query as an E.164 number, when it looked like one
    users: list[UserSummary]
    tickets: list[TicketRow]


# -- one ticket ------------------------------------------------------------------------------------

class Requester(TypedDict):
    id: int
    name: str | None
    phone: str | None


class Assignee(TypedDict):
    id: int
    name: str | None
    slack_user_id: str | None


class Delivery(TypedDict):
    """A reply's outbox row: where it is on its way to the customer (R23, B2)."""

    state: str
    reason: str | None
    outbox_id: int


class Comment(TypedDict):
    id: int
    author_id: int
    author: str | None
    author_role: str | None
    public: bool
    body: str
    attachments: list[dict[str, Any]]
    platform_message_id: str | None
    created_at: str
    delivery: Delivery | None  # replies only
    withdrawn_at: str | None  # the customer unsent it
    origin: str | None  # sent by the business from elsewhere (the WhatsApp Business app, ...)
    edits: list[str]  # the customer's edits, in order


class EventActor(TypedDict):
    type: str
    id: str | None


class Event(TypedDict):
    id: int
    kind: str
    actor: EventActor
    data: dict[str, Any]
    created_at: str


class Ticket(TypedDict):
    """A ticket; `comments` and `events` are empty unless read with its history."""

    id: int
    subject: str
    status: str
    channel: str
    account: str
    recipient: str
    tags: list[str]
    requester: Requester
    assignee: Assignee | None
    priority: str | None
    group_id: str | None
    fields: dict[str, Any]  # social_messaging_channel_info, then the custom fields
    window: Window
    created_at: str
    updated_at: str
    last_end_user_message_at: str | None
    comments: list[Comment]
    events: list[Event]


# -- one user --------------------------------------------------------------------------------------

class Identity(TypedDict):
    channel: str
    account: str
    platform_user_id: str
    profile: dict[str, Any]


class MergeSuggestion(TypedDict):
    """B5: another live account with the same phone number."""

    id: int
    name: str | None
    phone: str | None
    tickets: int
    reason: str


class User(TypedDict):
    id: int
    role: str  # "end-user" or "agent"
    name: str | None
    phone: str | None
    social_messaging_info: dict[str, Any]
    slack_user_id: str | None
    merged_into: int | None
    identities: list[Identity]
    ticket_ids: list[int]
    created_at: str
    merge_suggestions: list[MergeSuggestion]  # empty but for live end users
