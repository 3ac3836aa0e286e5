-- The start of the customer's last message, kept on the ticket: every row of the notifier, a view or a
-- search shows it, and reading it from the comments costs a lookup per row (issue 11's previews, 16).
ALTER TABLE tickets ADD COLUMN last_end_user_text VARCHAR;
