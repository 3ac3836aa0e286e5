"""Local fakes of the external services (Slack's Web API, the channels' send APIs) for tests and the demo."""
