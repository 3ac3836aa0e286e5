"""The `[slack]` configuration the Slack app runs with (parsed by socialdesk.config)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SlackConfig:
    bot_token: str = ""
    signing_secret: str = ""
    api_url: str = "https://slack.com/api/"
    team_id: str = ""
    triage_channel: str = ""
    agents: list[str] = field(default_factory=list)
    agent_group: str = ""
    command: str = "/social"

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token and self.signing_secret)
