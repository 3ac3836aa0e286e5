-- Business rules (triggers, automations, macros) live in files; what they must remember lives here.

-- Round-robin assignment: the agent who got the last ticket, per channel or per business account.
CREATE TABLE assignment_cursors (
    key VARCHAR PRIMARY KEY,                  -- 'channel:whatsapp' or 'account:whatsapp:PN1'
    last_agent VARCHAR NOT NULL,              -- that agent's Slack user id
    updated_at TIMESTAMP NOT NULL
);

-- The last event of each ticket that triggers have seen: later events are "the update" that the
-- `changed`, `value` and `value_previous` operators look at.
CREATE TABLE trigger_marks (
    ticket_id BIGINT PRIMARY KEY,
    event_id BIGINT NOT NULL
);
