"""Instagram direct messages: the `[[instagram]]` professional accounts, their webhook and the Send API.

Owns: the account configuration (with `human_agent_tag` for accounts that have Meta's Human Agent
permission), what Instagram's messages look like to the desk (tickets tagged `instagram`, 24 hours and
the HUMAN_AGENT tag for 7 days) and how the account authenticates (an Instagram User access token, as a
Bearer header, on graph.instagram.com). Everything else is the Messenger Platform's, shared with
Messenger in connectors/meta.py (`meta.MessagingConnector`): routing by the account id (`entry[].id`)
on the one `/webhooks/instagram` URL, `messaging[]` events (messages, story replies and mentions, shared
posts as `share` or, from 2026-04-27, `ig_post`, reels, reactions, edits, unsent messages, read
receipts, what the account sent from the Instagram app as the business's comment), sending text (split
past 1,000 characters) with the messaging type the window calls for, and Graph errors (code 10 window
closed, 4/32/613 rate limits, 551 "This person isn't available right now" permanent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from connectors import base, meta
from warehouse.channels import Channel, DemoProfile, DemoUserIds, Window

SECTION = "instagram"
KEYS = ("account_id", "app_secret", "verify_token", "access_token")
OPTIONAL = ("username", "api_url", "human_agent_tag")
# Instagram API with Instagram Login: no Facebook Page needed, the account's own id and token.
API_URL = "https://graph.instagram.com/v21.0"
TEXT_LIMIT = 1000  # "Text message must be less than 1000 characters" (Send a Message, limitations)
WINDOW_CLOSED_SUBCODE = 2534022  # "This message is sent outside of allowed window"
# Files go out only from a public URL (Instagram has no upload for messages), and SocialDesk hosts none.
FILE_REASON = ("Instagram only sends images and files from a public HTTPS URL, which SocialDesk does not host; "
               "share a link to the file in the text instead")
# As Messenger: 24 hours, then 7 days with the HUMAN_AGENT tag for accounts flagged `human_agent_tag`
# (copied into the ticket's channel info by account_info, for the desk's window check).
WINDOW = Window(24, tag="HUMAN_AGENT", tagged_hours=7 * 24, flag="human_agent_tag")
PLATFORM = meta.Platform(channel=SECTION, object="instagram",
                         label="Instagram", account_noun="account", user_key="igsid",
                         inbox="the Instagram app", text_limit=TEXT_LIMIT,
                         window_closed_subcode=WINDOW_CLOSED_SUBCODE,
                         # Instagram's Send API documents no `metadata`: our echoes are known by their id.
                         metadata=False)

# What the rest of SocialDesk knows of Instagram (R7, B1).
CHANNEL = Channel(
    name="instagram", tag="instagram", label="Instagram", icon="🄸", abbreviation="IG", account_noun="account",
    window=WINDOW,
    # No Zendesk via type is mapped yet: exported rules naming Instagram are reported, not guessed at.
    demo=DemoProfile(accounts=(("17841405793187218", "Brand Instagram", 0.10),),
                     user_ids=DemoUserIds(start=6000000000000000), reply_hours=1.5))


@dataclass(frozen=True, slots=True, kw_only=True)
class Account(meta.MessagingAccount):
    """An Instagram professional account: webhooks name it by `entry[].id`, its IG_ID (`account_id`), which
    is the send path too."""

    username: str = ""
    api_url: str = API_URL

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        base.check_table(table, SECTION, KEYS, OPTIONAL)
        return cls(account_id=base.text_value(table, "account_id", SECTION, allow_int=True),
                   username=str(table.get("username") or "").strip().lstrip("@"),
                   api_url=base.url_value(table, SECTION, API_URL),
                   human_agent_tag=meta.human_agent_value(table, SECTION), **meta.AppAccount.secrets(table, SECTION))

    def public(self) -> dict[str, Any]:
        """Its id and @username; `human_agent_tag` when the 7 days apply (the desk's window check reads it
        in the ticket's channel info)."""
        return {"instagram_account_id": self.account_id, "username": self.username,
                "human_agent_tag": self.human_agent_tag}

    def auth(self) -> dict[str, Any]:
        # A header, not a query parameter: the token then never sits in a URL a log could print.
        return {"headers": {"Authorization": f"Bearer {self.access_token}"}}


class Connector(meta.MessagingConnector[Account]):
    channel: ClassVar[str] = CHANNEL.name
    platform: ClassVar[meta.Platform] = PLATFORM
    account_type = Account

    async def attachment(self, session: aiohttp.ClientSession, account: Account,
                         file: base.OutboundFile) -> dict[str, Any] | base.DeliveryResult:
        return base.DeliveryResult.failed(FILE_REASON)


DESCRIPTION = base.Description(CHANNEL, Connector.from_config, route="app",
                               simulation="socialdesk.fakes.instagram_api:INSTAGRAM",
                               media_domains=("cdninstagram.com", "fbcdn.net", "fbsbx.com"))
