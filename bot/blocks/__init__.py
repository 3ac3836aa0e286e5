"""Block Kit for every Slack surface, built by pure functions and checked against Slack's limits."""
