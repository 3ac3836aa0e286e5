"""`[server] webhook_workers`: worker processes answer the public port for the store process (issue 7).

Everything runs through `socialdesk serve` in a subprocess, as deployed: webhooks are verified and
answered by a worker once the store process has committed them, every other route reaches the
store process unchanged, private routes stay private, and a crash of the store process loses
nothing that was acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import media
from socialdesk.fakes import meta_api, slack_api
from socialdesk.fakes.meta_api import WHATSAPP_PARIS
from socialdesk.sandbox import Sandbox
from socialdesk.workers import MAX_BATCH_BYTES, MAX_BATCH_DELIVERIES, _split
from tests.test_ack_log import poison_body
from tests.test_resilience import (
    _free_port,
    _serve,
    _toml,
    _wait_up,
    assert_redelivery_stores_each_once,
    crash_requests,
    kill_9_mid_load,
)
from warehouse import owner
from warehouse.entries import Entry


def _workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


def _http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Served:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        # The fake Slack answers the notifier; the channels' fakes only lend accounts and signing.
        self.sandbox = asyncio.run_coroutine_threadsafe(Sandbox().start(), self.loop).result(30)
        slack = (f'[slack]\nbot_token = "{slack_api.BOT_TOKEN}"\nsigning_secret = "{slack_api.SIGNING_SECRET}"\n'
                 f'api_url = "{self.sandbox.slack.api_url}"\nteam_id = "{slack_api.TEAM_ID}"\n')
        self.config = tmp / "c.toml"
        self.config.write_text('[store]\nbuild_nice = 10\n[server]\nwebhook_workers = 2\n'
                               'media_secret = "workers-media"\n' + slack + _toml(self.sandbox.channels))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = _serve(tmp, self.config, self.port)
        _wait_up(self.port, self.proc, tmp / "c.duckdb")

    def admin(self, op: str, kwargs: dict[str, Any]) -> tuple[int, Any]:
        """An operation through the store process's admin socket, as the CLI calls it."""
        return owner.call(self.tmp / "c.duckdb", f"/admin/ops/{op}", kwargs)

    def webhook(self, text: str, message_id: str) -> tuple[int, bytes]:
        body = self.sandbox.message("whatsapp", WHATSAPP_PARIS, "33612345678", text, message_id, datetime.now(UTC))
        req = self.sandbox.request("whatsapp", WHATSAPP_PARIS, body)
        return _http(self.url + req.path, req.body, req.headers)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        asyncio.run_coroutine_threadsafe(self.sandbox.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    service = Served(tmp_path_factory.mktemp("workers"))
    yield service
    service.stop()


def test_the_service_starts_the_configured_number_of_workers(served: Served) -> None:
    deadline = time.monotonic() + 10
    while len(_workers_of(served.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_workers_of(served.proc.pid)) == 2


def _thread_nices(pid: int) -> dict[int, int]:
    """Each thread's nice value (field 19 of its /proc stat), by thread id."""
    return {int(task.name): int((task / "stat").read_text().rsplit(") ", 1)[1].split()[16])
            for task in Path(f"/proc/{pid}/task").iterdir()}


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
def test_build_nice_lets_acknowledgements_take_the_cpu_from_ticket_building_issue_15(served: Served) -> None:
    # Acknowledging is the promise to the platforms; the log holds what building has not reached.
    nices = _thread_nices(served.proc.pid)
    assert nices[served.proc.pid] == 0  # the event loop
    assert sorted(nices.values()).count(10) == 1  # the thread that builds tickets during bursts, alone
    assert all(n in (0, 10) for n in nices.values())


def test_a_signed_webhook_is_answered_after_the_store_process_commits_it_b4(served: Served) -> None:
    assert served.webhook("Bonjour via a worker", "wamid.workers.1")[0] == 200
    assert served.webhook("Bonjour via a worker", "wamid.workers.1")[0] == 200  # a redelivery: stored once
    status, body = _http(f"{served.url}/admin/ops/tickets", b"{}")
    assert status == 404  # the admin route is not reachable through the public port
    status, ticket = served.admin("ticket", {"id": 1})
    assert status == 200, ticket
    assert [c["body"] for c in ticket["comments"]] == ["Bonjour via a worker"]


def test_agents_open_inbound_media_through_a_worker(served: Served) -> None:
    media_id = served.sandbox.fakes["whatsapp"].add_media(b"\x89PNG through the worker", "image/png")
    body = meta_api.whatsapp_message_payload(WHATSAPP_PARIS, "33687654321", message_id="wamid.workers.img",
                                             content={"type": "image", "image": {"id": media_id,
                                                                                 "mime_type": "image/png"}})
    req = served.sandbox.request("whatsapp", WHATSAPP_PARIS, body)
    assert _http(served.url + req.path, req.body, req.headers)[0] == 200
    status, found = served.admin("search", {"query": "+33687654321"})
    assert status == 200, found
    ticket_id = found["users"][0]["ticket_ids"][0]
    comment_id = served.admin("ticket", {"id": ticket_id})[1]["comments"][0]["id"]
    link = media.sign_link("workers-media", served.url, comment_id, 0)
    with urllib.request.urlopen(link, timeout=30) as resp:
        assert (resp.status, resp.headers["Content-Type"], resp.read()) == (
            200, "image/png", b"\x89PNG through the worker")


def test_a_forged_webhook_is_refused_by_the_worker(served: Served) -> None:
    status, _ = _http(f"{served.url}/webhooks/whatsapp", b'{"object": "whatsapp_business_account", "entry": []}',
                      {"X-Hub-Signature-256": "sha256=" + "0" * 64, "Content-Type": "application/json"})
    assert status == 401


def test_the_internal_route_is_not_reachable_through_the_public_port(served: Served) -> None:
    status, _ = _http(f"{served.url}/internal/ingest", b"\x80\x05N.")
    assert status == 404


def _raw(port: int, target: str, body: bytes = b"{}") -> int:
    """A request with exactly this request target (urllib would normalize it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("target", ["/x/../admin/ops/search", "/./admin/ops/search", "/%2e/admin/ops/search",
                                    "/webhooks/x/../../internal/ingest", "/slack/events/../../admin/ops/search",
                                    "/%2fadmin/ops/search", "http://127.0.0.1/admin/ops/search",
                                    "/media/1/0/../../../admin/ops/search"])
def test_dot_segments_and_absolute_targets_never_reach_private_routes_issue_13(served: Served, target: str) -> None:
    assert _raw(served.port, target, json.dumps({"query": "+33"}).encode()) == 404


def test_the_store_process_listens_on_no_tcp_port_but_quacks_and_its_sockets_are_its_users_alone_issue_13(
        served: Served) -> None:
    listening = Path(f"/proc/{served.proc.pid}/net/tcp").read_text().splitlines()[1:]
    fds = {os.readlink(f) for f in Path(f"/proc/{served.proc.pid}/fd").iterdir() if os.path.exists(f)}
    ports = {int(line.split()[1].split(":")[1], 16) for line in listening
             if line.split()[3] == "0A" and f"socket:[{line.split()[9]}]" in fds}
    quack = int(served.admin("live", {})[1]["uri"].rsplit(":", 1)[1])  # the notebooks' read-only port
    assert ports == {quack}
    for sock in (owner.admin_socket(served.tmp / "c.duckdb"), owner.workers_socket(served.tmp / "c.duckdb")):
        assert sock.stat().st_mode & 0o077 == 0, oct(sock.stat().st_mode)
    assert not list(served.tmp.glob("*.admin.json"))  # no token file any more


def test_slack_requests_reach_the_store_process_unchanged(served: Served) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "prove-it", "token": "x"})
    status, answer = _http(f"{served.url}/slack/events", body.encode(),
                           {**slack_api.sign(body), "Content-Type": "application/json"})
    assert status == 200 and b"prove-it" in answer
    forged = {**slack_api.sign(body, secret="not-the-secret"), "Content-Type": "application/json"}
    assert _http(f"{served.url}/slack/events", body.encode(), forged)[0] == 401


def test_health_and_metrics_come_from_the_store_process_with_the_workers_counts(served: Served) -> None:
    assert _http(f"{served.url}/healthz") == (200, b'{"ok": true}')
    served.webhook("Counted", "wamid.workers.metrics")
    deadline = time.monotonic() + 10
    while True:  # workers hand their counts over with the next batch, or within a second
        metrics = _http(f"{served.url}/metrics")[1].decode()
        if 'socialdesk_webhooks_total{channel="whatsapp",status="401"}' in metrics and \
                'socialdesk_webhooks_total{channel="whatsapp",status="200"}' in metrics:
            break
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)


def test_a_worker_that_dies_is_started_again(served: Served) -> None:
    victim = _workers_of(served.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while victim in _workers_of(served.proc.pid) or len(_workers_of(served.proc.pid)) < 2:
        assert time.monotonic() < deadline, "the worker was not started again"
        time.sleep(0.1)
    assert served.webhook("After a worker restart", "wamid.workers.restart")[0] == 200


def test_a_poison_body_through_a_worker_is_answered_200_and_dead_lettered_alone_issue_15(served: Served) -> None:
    """A lone surrogate cannot be encoded as msgpack: once, it failed the whole batch of webhooks the
    worker was sending with it. Now it fails alone, as a dead letter, and its sibling is a ticket."""
    body = poison_body(served.sandbox)
    req = served.sandbox.request("whatsapp", WHATSAPP_PARIS, body)
    assert _http(served.url + req.path, req.body, req.headers)[0] == 200
    assert served.webhook("Right behind it", "wamid.workers.after")[0] == 200
    status, found = served.admin("search", {"query": "+33612345678"})
    assert status == 200, found
    bodies = [c["body"] for t in found["users"][0]["ticket_ids"]
              for c in served.admin("ticket", {"id": t})[1]["comments"]]
    assert "Bonjour" in bodies and "Right behind it" in bodies
    status, answer = served.admin("dead_letters", {})
    assert status == 200 and [d["item"]["message_id"] for d in answer["dead_letters"]] == ["wamid.poison"]


def test_a_batch_stays_within_its_limits() -> None:
    pending: list[tuple[Entry, Any]] = [(Entry("whatsapp", b"x" * 100, b""), None) for _ in range(1500)]
    batch, rest = _split(pending)
    assert len(batch) == MAX_BATCH_DELIVERIES and len(rest) == 1500 - MAX_BATCH_DELIVERIES
    big = [(Entry("whatsapp", b"x" * (MAX_BATCH_BYTES // 2 + 1), b""), None) for _ in range(3)]
    assert [len(part) for part in _split(big)] == [1, 2]
    huge = [(Entry("whatsapp", b"x" * (MAX_BATCH_BYTES + 1), b""), None)]
    assert [len(part) for part in _split(huge)] == [1, 0]  # one delivery always goes


def test_kill_9_of_the_store_process_loses_nothing_acknowledged_and_its_workers_stop(tmp_path: Path) -> None:
    sandbox, requests = crash_requests("wcrash")
    config = tmp_path / "c.toml"
    config.write_text("[server]\nwebhook_workers = 1\n" + _toml(sandbox.channels))
    port = _free_port()
    proc = _serve(tmp_path, config, port)
    _wait_up(port, proc, tmp_path / "c.duckdb")
    workers = _workers_of(proc.pid)
    assert workers
    acked = kill_9_mid_load(proc, port, requests)
    deadline = time.monotonic() + 15
    while any(_alive(w) for w in workers):
        assert time.monotonic() < deadline, "a worker outlived its store process"
        time.sleep(0.1)
    assert_redelivery_stores_each_once(tmp_path, config, port, requests, acked)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_port_held_by_another_program_stops_start_up_with_a_plain_error(tmp_path: Path, workers: int) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        config = tmp_path / "c.toml"
        config.write_text(f'[server]\nhost = "127.0.0.1"\nwebhook_workers = {workers}\n')
        env = {**os.environ, "PORT": str(port), "SOCIALDESK_CONFIG": str(config),
               "SOCIALDESK_DB": str(tmp_path / "p.duckdb")}
        out = subprocess.run([sys.executable, "-m", "socialdesk.cli", "serve"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"port {port} on 127.0.0.1 cannot be used" in out.stderr and "Traceback" not in out.stderr


def test_wechat_webhooks_are_answered_by_the_store_process_which_remembers_every_nonce_issue_13(
        served: Served) -> None:
    """A worker would not know the nonces another worker saw: WeChat's little traffic goes through to the one
    process that sees them all, and a fresh nonce signs one message only."""
    from socialdesk.fakes import wechat_api
    from socialdesk.fakes.wechat_api import DEMO_ACCOUNT as WECHAT_ACCOUNT
    genuine = served.sandbox.request("wechat", WECHAT_ACCOUNT, served.sandbox.message(
        "wechat", WECHAT_ACCOUNT, "oCustomer", "你好 via a worker", "7101", datetime.now(UTC)))
    query = "?" + urllib.parse.urlencode(genuine.query)
    assert _http(served.url + genuine.path + query, genuine.body, genuine.headers)[0] == 200
    forged = wechat_api.message_payload(WECHAT_ACCOUNT, "oMallory", "forged", 1667)
    for _ in range(4):  # whichever worker takes it
        assert _http(served.url + genuine.path + query, forged, genuine.headers)[0] == 401
