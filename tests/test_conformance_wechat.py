"""Issue 12: every WeChat file of the conformance corpus (../shared/conformance/payloads/wechat, read in
place), posted through the real webhook route twice: each on a plain-mode account, and again encrypted on
a safe-mode one (29 cases). 200 both times, the second changes nothing, and the desk does with each what a
faithful desk does: a customer's message is a comment with its text or media, a kind we do not render a
readable placeholder, an event (follow, scan, menu click, location report) creates no ticket.

WeChat's official safe-mode sample (WXBizMsgCrypt's Sample.py) is posted as WeChat sent it: its own token,
EncodingAESKey, appid, timestamp, nonce and msg_signature, on an account with those credentials, at the
time it was signed (the connector's clock is set to it: issue 13 refuses signatures older than 5 minutes).
WeChat sends no delivery or read receipts for customer-service messages, so there are none to move.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from connectors import wechat_crypto
from socialdesk.config import Config
from socialdesk.sandbox import Sandbox
from socialdesk.service import REGISTRY, build_app
from tests.conformance import Case, Corpus, Posted, _tables, case_ids, cases, in_corpus, needs_corpus

pytestmark = needs_corpus

OFFICIAL = "wc_official_sample_safe_text"
# Facts of WeChat's official sample (Tencent's WXBizMsgCrypt Sample.py, 2014; a verbatim copy is
# charlesXu86/Chatbot_CN, Chatbot_Web/impl/weixin/Sample.py): the account's credentials and the query
# of the request that carried the file's body.
SAMPLE_ACCOUNT = {"original_id": "gh_10f6c3c3ac5a", "token": "spamtest", "app_id": "wx2c2769f8efd9abc2",
                  "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}
SAMPLE_TIMESTAMP, SAMPLE_NONCE = "1409735669", "1320562132"
SAMPLE_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"

NO_TICKET = "no ticket"
MEDIA_ID = "media_id"  # wechatpy's fixtures name their media ids so
# file (plain or safe) -> the comments the agent sees as (text, attachments), or NO_TICKET.
EXPECTED: dict[str, Any] = {
    "wc_official_sample_safe_text": [("abcdteT", [])],
    "wc_wechatpy_event_click": NO_TICKET,
    "wc_wechatpy_event_location": NO_TICKET,
    "wc_wechatpy_event_scan": NO_TICKET,
    "wc_wechatpy_event_subscribe": NO_TICKET,
    "wc_wechatpy_event_subscribe_scan": NO_TICKET,
    "wc_wechatpy_event_unsubscribe": NO_TICKET,
    "wc_wechatpy_event_view": NO_TICKET,
    "wc_wechatpy_image": [("", [{"type": "image", "media_id": MEDIA_ID, "url": "this is a url"}])],
    "wc_wechatpy_link": [("公众平台官网链接\nurl", [])],  # title, then the URL (the description repeats the title)
    "wc_wechatpy_location": [("", [{"type": "location", "latitude": 23.134521, "longitude": 113.358803,
                                    "title": "位置信息"}])],
    "wc_wechatpy_text": [("this is a test", [])],
    "wc_wechatpy_unknown_notsure": [("sent an unsupported message (type: notsure)", [])],
    "wc_wechatpy_video": [("", [{"type": "video", "media_id": MEDIA_ID},
                                {"type": "image", "media_id": "thumb_media_id", "caption": "video thumbnail"}])],
    "wc_wechatpy_voice": [("", [{"type": "audio", "media_id": MEDIA_ID, "mime_type": "audio/format"}])],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Corpus]:
    """tests.conformance's one service for all cases, with the official sample's account as WeChat made it."""
    sandbox = await Sandbox().start()
    all_cases = cases("wechat")
    tables, accounts = _tables(sandbox, "wechat", all_cases)
    official = [c.name for c in all_cases].index(OFFICIAL)
    tables[official] = {**copy.deepcopy(tables[official]), **SAMPLE_ACCOUNT}
    accounts[OFFICIAL] = SAMPLE_ACCOUNT["original_id"]
    cfg = sandbox.configure(Config())
    cfg.channels = {**cfg.channels, "wechat": tables}
    cfg.store.path = str(tmp_path_factory.mktemp("corpus-wechat") / "corpus-wechat.duckdb")
    cfg.server.media_secret = "corpus-media-secret"
    client = TestClient(TestServer(build_app(cfg)))
    await client.start_server()
    try:
        yield Corpus(sandbox, client, "wechat", tables, accounts)
    finally:
        await client.close()
        await sandbox.stop()


@contextmanager
def service_clock(world: Corpus, unix_seconds: float) -> Iterator[None]:
    """The running service's WeChat connector reads the time from here (its freshness check)."""
    connector = world.client.app[REGISTRY]["wechat"]
    saved = connector.clock
    connector.clock = lambda: unix_seconds
    try:
        yield
    finally:
        connector.clock = saved


async def post_official(world: Corpus, case: Case) -> Posted:
    """The sample as WeChat posted it. WeChat puts the plain `signature` beside msg_signature on every
    request; the sample omits it, so it is computed from the sample's own token, timestamp and nonce."""
    query = {"signature": wechat_crypto.signature(SAMPLE_ACCOUNT["token"], SAMPLE_TIMESTAMP, SAMPLE_NONCE),
             "timestamp": SAMPLE_TIMESTAMP, "nonce": SAMPLE_NONCE, "openid": "oyORnuP8q7ou2gfYjqLzSIWZf0rs",
             "encrypt_type": "aes", "msg_signature": SAMPLE_MSG_SIGNATURE}
    name = world.connector.account_info(world.accounts[case.name])["account_name"]
    resp = await world.client.post(f"/webhooks/wechat/{name}", data=case.body(), params=query,
                                   headers={"Content-Type": "text/xml"})
    return Posted(case, world.accounts[case.name], resp.status, await resp.text())


_posted: dict[str, tuple[Posted, Posted]] = {}


async def posted(world: Corpus, case: Case) -> tuple[Posted, Posted]:
    if case.name not in _posted:
        if case.name == OFFICIAL:
            with service_clock(world, int(SAMPLE_TIMESTAMP) + 1):  # WeChat posts within its 5 s
                first = await post_official(world, case)
                before = world.snapshot()
                second = await post_official(world, case)  # WeChat retrying: same nonce, same body
                assert world.snapshot() == before, f"{case.name}: the same body twice changed the store"
            _posted[case.name] = (first, second)
        else:
            _posted[case.name] = await world.post_twice(case)
    return _posted[case.name]


def test_every_wechat_file_has_an_expectation_and_29_cases_are_posted() -> None:
    assert sorted(EXPECTED) == sorted({c.path.stem for c in cases("wechat")})
    assert len(cases("wechat")) == 29


@in_corpus
@pytest.mark.parametrize("case", cases("wechat"), ids=case_ids("wechat"))
async def test_every_wechat_file_is_answered_200_twice_and_the_second_changes_nothing(world: Corpus,
                                                                                        case: Case) -> None:
    first, second = await posted(world, case)
    assert (first.status, second.status) == (200, 200), first.text
    assert first.text == "success"  # anything else shows the customer an error in WeChat


@in_corpus
@pytest.mark.parametrize("case", cases("wechat"), ids=case_ids("wechat"))
async def test_every_wechat_file_is_handled_as_a_faithful_desk_would(world: Corpus, case: Case) -> None:
    await posted(world, case)
    expected = EXPECTED[case.path.stem]
    if expected == NO_TICKET:
        assert world.tickets(case) == []
        return
    [ticket] = world.tickets(case)
    assert [(c["body"], c["attachments"]) for c in ticket["comments"]] == expected
    assert ticket["tags"] == ["wechat", "messaging_support"]
    assert all(c["author_role"] == "end-user" for c in ticket["comments"])


@in_corpus
async def test_issue13_the_official_sample_posted_today_is_refused_as_a_replay(world: Corpus) -> None:
    """Signed in 2014: correctly signed, and far too old. Nothing more is stored."""
    [case] = [c for c in cases("wechat") if c.name == OFFICIAL]
    await posted(world, case)
    before = world.snapshot()
    late = await post_official(world, case)
    assert late.status == 401 and "replay" in late.text
    assert world.snapshot() == before
