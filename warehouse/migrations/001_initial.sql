-- The ticket store. Times are UTC (TIMESTAMP without zone). Ids come from sequences.
CREATE SEQUENCE user_ids START 1;
CREATE SEQUENCE ticket_ids START 1;
CREATE SEQUENCE comment_ids START 1;
CREATE SEQUENCE event_ids START 1;
CREATE SEQUENCE outbox_ids START 1;
CREATE SEQUENCE inbox_ids START 1;

-- The company's business accounts, as configured (R2, R8).
CREATE TABLE accounts (
    channel VARCHAR NOT NULL,
    account VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    info JSON NOT NULL,
    PRIMARY KEY (channel, account)
);

-- End users and agents. A merged end user stays as a tombstone pointing at the survivor (R5).
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    role VARCHAR NOT NULL,                    -- 'end-user' or 'agent'
    name VARCHAR,
    phone VARCHAR,                            -- E.164 (R6, R25)
    social_messaging_info JSON NOT NULL,      -- "User's social messaging info" (R6)
    slack_user_id VARCHAR,
    merged_into BIGINT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- One per (channel, business account, platform user id) (R4).
CREATE TABLE identities (
    channel VARCHAR NOT NULL,
    account VARCHAR NOT NULL,
    platform_user_id VARCHAR NOT NULL,
    user_id BIGINT NOT NULL,
    profile JSON NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (channel, account, platform_user_id)
);

CREATE TABLE tickets (
    id BIGINT PRIMARY KEY,
    status VARCHAR NOT NULL,                  -- new, open, pending, hold, solved, closed
    requester_id BIGINT NOT NULL,
    assignee_id BIGINT,
    group_id VARCHAR,
    priority VARCHAR,
    channel VARCHAR NOT NULL,                 -- whatsapp, messenger, line, wechat, x
    account VARCHAR NOT NULL,                 -- the business account replies leave from (R2, R20)
    recipient VARCHAR NOT NULL,               -- the end user's platform id replies go to
    subject VARCHAR NOT NULL,
    tags VARCHAR[] NOT NULL,
    channel_info JSON NOT NULL,               -- "Social messaging channel info" (R8)
    custom_fields JSON NOT NULL,
    end_user_messages INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    status_changed_at TIMESTAMP NOT NULL,
    solved_at TIMESTAMP,
    last_end_user_message_at TIMESTAMP,
    last_agent_update_at TIMESTAMP,
    first_reply_at TIMESTAMP
);

-- Append-only tables (comments, inbox, events) carry no index: ids come from sequences, and an ART
-- index over tens of millions of rows would cost memory and every insert.
CREATE TABLE comments (
    id BIGINT NOT NULL,
    ticket_id BIGINT NOT NULL,
    author_id BIGINT NOT NULL,
    public BOOLEAN NOT NULL,
    body VARCHAR NOT NULL,
    attachments JSON NOT NULL,
    platform_message_id VARCHAR,
    created_at TIMESTAMP NOT NULL
);

-- Every inbound message ever stored, keyed as the platforms key them: replays change nothing (B4).
CREATE TABLE inbound_keys (
    channel VARCHAR NOT NULL,
    account VARCHAR NOT NULL,
    message_id VARCHAR NOT NULL,
    PRIMARY KEY (channel, account, message_id)
);

-- Raw verified webhook bodies, kept for audit and reprocessing.
CREATE TABLE inbox (
    id BIGINT NOT NULL,
    channel VARCHAR NOT NULL,
    received_at TIMESTAMP NOT NULL,
    body BLOB NOT NULL
);

-- Every change to a ticket or user, with its actor (agent, end-user, rule, system).
CREATE TABLE events (
    id BIGINT NOT NULL,
    ticket_id BIGINT,
    user_id BIGINT,
    kind VARCHAR NOT NULL,
    actor_type VARCHAR NOT NULL,
    actor_id VARCHAR,
    data JSON NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Replies waiting to leave, and what became of them (R20, R22, R23, B2, B4).
CREATE TABLE outbox (
    id BIGINT PRIMARY KEY,
    ticket_id BIGINT NOT NULL,
    comment_id BIGINT,
    agent_id BIGINT,
    channel VARCHAR NOT NULL,
    account VARCHAR NOT NULL,
    recipient VARCHAR NOT NULL,
    body VARCHAR NOT NULL,
    file_name VARCHAR,
    file_mime VARCHAR,
    file_data BLOB,
    template JSON,
    state VARCHAR NOT NULL,                   -- queued, sent, delivered, read, failed
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP,
    last_error VARCHAR,
    window_closed BOOLEAN NOT NULL,
    platform_message_id VARCHAR,
    retry_key VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP,
    delivered_at TIMESTAMP,
    read_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL
);
