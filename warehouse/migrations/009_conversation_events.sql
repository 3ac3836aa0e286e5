-- What customers do to their messages and what the platforms say replies cost (issue 12).
-- A message the customer unsent stays for the record, marked withdrawn; an edit is an event on the
-- comment (the original text stays). Business messages sent from elsewhere (the WhatsApp Business
-- app, another Messenger inbox) are comments whose `origin` says where they came from.
ALTER TABLE comments ADD COLUMN withdrawn_at TIMESTAMP;
ALTER TABLE comments ADD COLUMN origin VARCHAR;
-- WhatsApp's per-message pricing from status webhooks: category (service, utility, marketing,
-- authentication), billable, pricing_model.
ALTER TABLE outbox ADD COLUMN pricing JSON;
ALTER TABLE outbox ADD COLUMN played_at TIMESTAMP;
ALTER TABLE early_receipts ADD COLUMN pricing JSON;
