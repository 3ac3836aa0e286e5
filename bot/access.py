"""Who may act on tickets: the Slack user ids of `[slack] agents`, or the members of `agent_group`.

The group's members come from `usergroups.users.list` and are cached for a few minutes, so a
burst of clicks costs one API call. The first agent action of a person also records them as an
agent in the store (with their Slack name from `users.info`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import SlackConfig
from warehouse.desk import Desk

log = logging.getLogger(__name__)
REFUSAL = ("Sorry, only support agents can work on social messaging tickets. "
           "Ask an admin to add you to the agents of SocialDesk.")


class Access:
    def __init__(self, cfg: SlackConfig, client: AsyncWebClient, desk: Desk, ttl: float = 300.0) -> None:
        self.cfg = cfg
        self.client = client
        self.desk = desk
        self.ttl = ttl
        self._group: set[str] = set()
        self._group_at = -1e18
        self._lock = asyncio.Lock()
        self._agent_ids: dict[str, int] = {}

    async def group_members(self) -> set[str]:
        if not self.cfg.agent_group:
            return set()
        async with self._lock:
            if time.monotonic() - self._group_at > self.ttl:
                try:
                    resp = await self.client.usergroups_users_list(usergroup=self.cfg.agent_group)
                    self._group = set(resp.get("users") or [])
                    self._group_at = time.monotonic()
                except SlackApiError as exc:  # keep the last known members; refuse if none
                    log.warning("usergroups.users.list failed: %s", exc.response.get("error"))
            return set(self._group)

    async def is_agent(self, slack_user_id: str | None) -> bool:
        if not slack_user_id:
            return False
        if slack_user_id in self.cfg.agents:
            return True
        return slack_user_id in await self.group_members()

    async def known_agents(self) -> set[str]:
        return set(self.cfg.agents) | await self.group_members()

    async def agent_id(self, slack_user_id: str) -> int:
        """The agent's user id in the store, created (named after their Slack profile) on first use."""
        if slack_user_id in self._agent_ids:
            return self._agent_ids[slack_user_id]
        name = None
        try:
            user: dict[str, Any] = (await self.client.users_info(user=slack_user_id)).get("user") or {}
            name = (user.get("profile") or {}).get("real_name") or user.get("real_name") or user.get("name")
        except SlackApiError as exc:
            log.warning("users.info failed for %s: %s", slack_user_id, exc.response.get("error"))
        agent = await self.desk.agent(slack_user_id, name)
        self._agent_ids[slack_user_id] = agent
        return agent
