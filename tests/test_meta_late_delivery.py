"""Meta's webhooks arrive in no guaranteed order and are retried for days (channels.md 1d): a message
the customer sent before the one that opened their ticket may arrive after it (issue 12, B3, B4).

Found while posting the conformance corpus: such a message is stored on the ticket, but the ticket's
view (`queries.ticket`, which the Slack thread and `socialdesk ticket` read) shows only comments from
the ticket's creation on, so the agent never saw it. The ticket now starts with its earliest message.
"""

from __future__ import annotations

from tests.conftest import ingest, later, msg
from warehouse import queries
from warehouse.store import Store


def test_b4_a_message_delivered_after_a_later_one_still_shows_on_the_ticket(store: Store) -> None:
    ingest(store, msg(text="Second: any news?", message_id="wamid.2", at=later(1)))
    result = ingest(store, msg(text="First: my parcel is late", message_id="wamid.1", at=later(0)))
    assert result.updated_tickets == [1]
    bodies = [c["body"] for c in queries.ticket(store.connection.cursor(), 1)["comments"]]
    assert bodies == ["First: my parcel is late", "Second: any news?"]
