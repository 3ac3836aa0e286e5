-- What the Slack app has acted on, by a key Slack gives it (an event id, a message's channel and ts,
-- a view submission's view and state), so an Events API retry or a replayed submission acts once.
-- Kept a day (warehouse/slack_state.py prunes it): Slack's last retry comes after five minutes.
CREATE TABLE slack_seen (
    key VARCHAR PRIMARY KEY,
    seen_at TIMESTAMP NOT NULL
);
-- Thread messages and reactions name a Slack message by (channel, ts): its ticket is found by ts
-- without scanning every card and thread message.
CREATE INDEX slack_messages_ts ON slack_messages (ts);
