"""Local fakes of the external services (Slack's Web API, the channels' send APIs).

They speak the real wire formats; the test suite and `socialdesk demo` point the configured `api_url`s at them.
"""
