-- Every notifier, view and Slack request starts by finding the agent from a Slack user id; among
-- hundreds of thousands of end users that is a scan without this index.
CREATE INDEX users_slack_user ON users (slack_user_id);
