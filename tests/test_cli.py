"""The CLI, in process and against a running service (design.md: commands go through the service)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from socialdesk.cli import main
from warehouse import owner

LINES = [
    {"channel": "whatsapp", "account": "106540352242922", "user_id": "33612345678", "message_id": "wamid.1",
     "sent_at": "2026-11-24T09:00:00Z", "text": "Bonjour", "profile": {"name": "Amélie", "phone": "+33612345678"}},
    {"channel": "messenger", "account": "682498302938465", "user_id": "1254459154682919", "message_id": "mid.1",
     "sent_at": "2026-11-24T09:01:00Z", "text": "hello", "profile": {"name": "Amélie D"}},
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOCIALDESK_DB", str(tmp_path / "cli.duckdb"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object, str]:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_ingest_reports_a_malformed_line_by_number_and_ingests_the_others(env: Path, capsys) -> None:
    file = write_lines(env / "in.jsonl", [LINES[0], "{not json", {"channel": "fax"}, LINES[1]])
    code, result, err = run(capsys, "ingest", str(file))
    assert code == 2  # not complete success: a script must notice
    assert result["stored"] == 2 and result["skipped"] == 2
    assert "line 2:" in err and "line 3: missing account" in err


def test_notifier_prints_the_documented_shape(env: Path, capsys) -> None:
    run(capsys, "ingest", str(write_lines(env / "in.jsonl", LINES)))
    code, result, _ = run(capsys, "notifier", "--agent", "U1", "--tab", "unassigned")
    assert code == 0
    assert set(result) == {"tab", "red_dot", "has_more", "page", "tickets"}
    row = result["tickets"][0]
    assert set(row) >= {"id", "status", "channel", "account", "requester", "conversation_status"}
    assert set(row["requester"]) == {"id", "name"}


def test_claim_tag_merge_and_user_work_end_to_end(env: Path, capsys) -> None:
    run(capsys, "ingest", str(write_lines(env / "in.jsonl", LINES)))
    assert run(capsys, "claim", "1", "--agent", "U1")[0] == 0
    assert [t["id"] for t in run(capsys, "notifier", "--agent", "U1")[1]["tickets"]] == [1]
    assert run(capsys, "tag", "1", "remove", "messaging_support")[1]["tags"] == ["whatsapp"]
    assert run(capsys, "notifier", "--agent", "U1")[1]["tickets"] == []
    assert run(capsys, "merge", "2", "1")[1]["into"] == 1
    user = run(capsys, "user", "1")[1]
    assert set(user) >= {"phone", "identities", "social_messaging_info", "merged_into", "ticket_ids"}
    assert user["ticket_ids"] == [1, 2]
    ticket = run(capsys, "ticket", "2")[1]
    assert set(ticket) >= {"status", "assignee", "requester", "channel", "account", "tags", "fields", "comments",
                           "events"}
    assert run(capsys, "search", "0033 6 12 34 56 78")[1]["users"][0]["id"] == 1


@pytest.mark.parametrize("args", [["ticket", "99"], ["status", "99", "open"], ["merge", "1", "1"],
                                  ["view", "No such view"], ["ingest", "missing.jsonl"]])
def test_bad_input_exits_non_zero_with_a_one_line_error(env: Path, capsys, args: list[str]) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_while_the_service_holds_the_store_commands_run_through_it(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SOCIALDESK_DB": str(tmp_path / "live.duckdb"), "PORT": str(port)}
    cli = [sys.executable, "-m", "socialdesk.cli"]
    server = subprocess.Popen([*cli, "serve"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not owner.is_running(tmp_path / "live.duckdb"):
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, "service did not start"
            time.sleep(0.1)
        write_lines(tmp_path / "in.jsonl", LINES)
        out = subprocess.run([*cli, "ingest", "in.jsonl", "--json"], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["stored"] == 2
        out = subprocess.run([*cli, "notifier", "--agent", "U1", "--tab", "unassigned", "--json"], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert [t["id"] for t in json.loads(out.stdout)["tickets"]] == [2, 1]
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert server.returncode == 0
    assert not owner.admin_socket(tmp_path / "live.duckdb").exists()


def test_rules_list_check_and_test_r24(env: Path, capsys) -> None:
    run(capsys, "ingest", str(write_lines(env / "in.jsonl", LINES)))
    listed = run(capsys, "rules", "list")[1]
    assert any(t["title"] == "Announce new social tickets in triage" for t in listed["triggers"])
    assert run(capsys, "rules", "check")[1]["ok"] is True
    tested = run(capsys, "rules", "test", "1")[1]
    assert set(tested) >= {"ticket_id", "triggers", "automations"}
    bad = env / "bad.json"
    bad.write_text('{"trigger": {"title": "Broken", "conditions": {"all": [{"field": "nope", "operator": "is", '
                   '"value": 1}]}, "actions": [{"field": "status", "value": "open"}]}}')
    code = main(["rules", "check", str(bad)])
    err = capsys.readouterr().err
    assert code == 1 and "bad.json" in err and "Broken" in err and "nope" in err


def test_demo_data_fills_the_store_for_the_other_commands(env: Path, capsys, monkeypatch) -> None:
    # Whether a ticket is still unclaimed depends on the time of day: the generated day is fixed here.
    from warehouse import clock
    monkeypatch.setattr(clock, "_source", lambda: datetime(2026, 11, 24, 15, 0))
    code, counts, _ = run(capsys, "demo-data", "--tickets", "300", "--seed", "3")
    assert code == 0 and counts["tickets"] == 300 and counts["comments"] > 300
    assert run(capsys, "view", "Unassigned social messaging tickets")[1]["tickets"]


def test_every_command_says_what_it_does_and_names_its_arguments(capsys) -> None:
    from socialdesk.cli import _parser
    commands = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, parser in commands.items():
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert parser.description and parser.description in " ".join(text.split()), name
        assert "None" not in text, name
    with pytest.raises(SystemExit):
        main(["merge", "--help"])
    assert "SOURCE INTO_TARGET" in capsys.readouterr().out


def test_demo_data_refuses_a_store_that_holds_real_data(env: Path, capsys) -> None:
    run(capsys, "ingest", str(write_lines(env / "in.jsonl", [{**LINES[0], "account": "PN-REAL"}])))
    code, _, err = run(capsys, "demo-data", "--tickets", "50")
    assert code == 1 and "is not a demo store" in err and "--into-existing" in err
    code, counts, _ = run(capsys, "demo-data", "--tickets", "50", "--into-existing")
    assert code == 0 and counts["tickets"] == 50
