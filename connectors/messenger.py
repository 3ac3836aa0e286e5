"""Facebook Messenger Platform: the `[[messenger]]` Pages, their webhook and the Send API.

Owns: the page configuration (with `human_agent_tag` for Pages that have Meta's Human Agent
permission), routing by page id (`entry[].id`) on the one `/webhooks/messenger` URL, turning
`messaging[]` and `standby[]` events into the warehouse's items (messages with every kind of
attachment readable, postbacks, reactions, edits, delivery and read watermarks, ad referrals into the
ticket's channel info, and what the Page sent from another app or its inbox as the business's
comment), sending text (split past 2,000 characters) and one file (uploaded through the Attachment
Upload API first) with the messaging type the window calls for (RESPONSE within 24 hours, the
HUMAN_AGENT tag for 7 days where permitted), mapping Graph errors (code 10 window closed, 4/32/613
rate limits) into reasons an agent can act on, and downloading attachments by their URL.
Shared Meta pieces (handshake, signature, errors, parts) and the Messenger Platform's events, sends and
errors (`meta.MessagingConnector`) live in connectors/meta.py; this module says what is Messenger's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from connectors import base, meta
from warehouse.channels import Channel, DemoProfile, DemoUserIds, Window

SECTION = "messenger"
KEYS = ("page_id", "page_name", "app_secret", "verify_token", "page_access_token")
OPTIONAL = ("api_url", "human_agent_tag")
WINDOW_CLOSED_SUBCODE = 2018278
TEXT_LIMIT = 2000  # "(#100) Length of param message[text] must be less than or equal to 2000"
# 24 hours after the customer's last message; with the HUMAN_AGENT tag a human may answer for 7 days
# (channels.md 7), on Pages with Meta's Human Agent permission (`human_agent_tag`, which account_info
# copies into the ticket's channel info for the desk's window check).
WINDOW = Window(24, tag="HUMAN_AGENT", tagged_hours=7 * 24, flag="human_agent_tag")
PLATFORM = meta.Platform(channel=SECTION, object="page", label="Messenger",
                         account_noun="Page", user_key="psid", inbox="the Facebook Page inbox",
                         text_limit=TEXT_LIMIT, window_closed_subcode=WINDOW_CLOSED_SUBCODE)


# What the rest of SocialDesk knows of Messenger (R7, B1): tickets are tagged `facebook`.
CHANNEL = Channel(
    name="messenger", tag="facebook", label="Messenger", icon="🄼", abbreviation="FB", account_noun="Page",
    window=WINDOW,
    zendesk_via=("facebook_message", 41, "sunshine_conversations_facebook_messenger", 78, "facebook"),
    demo=DemoProfile(accounts=(("682498302938465", "Brand page", 0.20),),
                     user_ids=DemoUserIds(start=7000000000000000), reply_hours=1.5))


@dataclass(frozen=True, slots=True, kw_only=True)
class Account(meta.MessagingAccount):
    """A Facebook Page: webhooks name it by `entry[].id` (its `account_id`), replies go out with its Page
    token."""

    page_name: str

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        base.check_table(table, SECTION, KEYS, OPTIONAL)
        return cls(account_id=base.text_value(table, "page_id", SECTION, allow_int=True),
                   page_name=base.text_value(table, "page_name", SECTION), api_url=meta.api_url_value(table, SECTION),
                   human_agent_tag=meta.human_agent_value(table, SECTION),
                   **meta.AppAccount.secrets(table, SECTION, "page_access_token"))

    def public(self) -> dict[str, Any]:
        # human_agent_tag: agents (and the desk's window check) should know a 7-day window applies.
        return {"page_id": self.account_id, "page_name": self.page_name, "human_agent_tag": self.human_agent_tag}

    @property
    def page_id(self) -> str:
        return self.account_id

    def auth(self) -> dict[str, Any]:
        # Meta documents the page token as a query parameter; never log or echo the URL it ends up in.
        return {"params": {"access_token": self.access_token}}


class Connector(meta.MessagingConnector[Account]):
    channel: ClassVar[str] = CHANNEL.name
    platform: ClassVar[meta.Platform] = PLATFORM
    account_type = Account
    id_source: ClassVar[str] = "page_id"

    async def attachment(self, session: aiohttp.ClientSession, account: Account,
                         file: base.OutboundFile) -> dict[str, Any] | base.DeliveryResult:
        """A file goes through the Attachment Upload API first, then is sent by its attachment id."""
        form = aiohttp.FormData()
        form.add_field("message", json.dumps({"attachment": {"type": _kind(file), "payload": {"is_reusable": True}}}))
        form.add_field("filedata", file.data, filename=file.filename, content_type=file.mime_type)
        answer = await base.call_api(session, "POST", f"{account.api_url}/{account.page_id}/message_attachments",
                                     data=form, **account.auth())
        if isinstance(answer, base.DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("attachment_id"):
            uploaded = str(answer.body["attachment_id"])
            return {"attachment": {"type": _kind(file), "payload": {"attachment_id": uploaded}}}
        result = meta.send_error(PLATFORM, answer, account, None, {})
        return base.DeliveryResult(result.state, reason=f"uploading {file.filename}: {result.reason}",
                                   retry_after=result.retry_after)


def _kind(file: base.OutboundFile) -> str:
    return "image" if file.mime_type.startswith("image/") else "file"


DESCRIPTION = base.Description(CHANNEL, Connector.from_config, route="app",
                               simulation="socialdesk.fakes.meta_api:MESSENGER",
                               media_domains=("fbcdn.net", "fbsbx.com", "facebook.com"))
