-- The Slack app's own state: where each ticket's card and thread messages are, and how far the
-- notifier has read the events table (bot/notify.py).
CREATE TABLE slack_messages (
    ticket_id BIGINT NOT NULL,
    kind VARCHAR NOT NULL,                    -- card, comment (end user), reply (outbox row), note, agent_note
    ref BIGINT NOT NULL,                      -- 0 for the card; the comment or outbox id otherwise
    channel VARCHAR NOT NULL,
    ts VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (ticket_id, kind, ref)
);

CREATE TABLE slack_cursor (
    name VARCHAR PRIMARY KEY,
    last_event_id BIGINT NOT NULL
);
