"""Quiet logs (issue 13): an unreachable Slack is one line from the app's mirror, not slack_sdk's INFO line
for every retry."""

from __future__ import annotations

import logging

from socialdesk import logs


def test_slacks_clients_say_only_warnings_unless_verbose() -> None:
    try:
        logs.configure()
        assert not logging.getLogger("slack_sdk.web.async_base_client").isEnabledFor(logging.INFO)
        assert logging.getLogger("bot.mirror").isEnabledFor(logging.WARNING)
        assert logging.getLogger("socialdesk.service").isEnabledFor(logging.INFO)
        logs.configure(verbose=True)
        assert logging.getLogger("slack_sdk.web.async_base_client").isEnabledFor(logging.DEBUG)
    finally:
        logs.configure()
