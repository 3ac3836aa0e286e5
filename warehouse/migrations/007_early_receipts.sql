-- Receipts naming a reply that is not yet recorded as sent: the platform's webhook can beat the
-- sender's own record of the send. They are applied when the reply is recorded sent (B2). Receipts
-- for messages sent from elsewhere (the WhatsApp Business app, say) never find a reply and are
-- dropped after a day.
CREATE TABLE early_receipts (
    channel VARCHAR NOT NULL,
    account VARCHAR NOT NULL,
    platform_message_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    platform_at TIMESTAMP NOT NULL,           -- when the platform says it happened
    error VARCHAR,
    received_at TIMESTAMP NOT NULL
);
