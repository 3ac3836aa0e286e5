"""An operator's first week with the configuration file (issue 13): the example starts as copied, every
mistake is one line naming the section and the key, and secrets are asked for only where they are used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ConfigError
from socialdesk import config
from socialdesk.cli import main
from warehouse import owner

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "socialdesk.toml"
    file.write_text(text)
    return file


def clean_env(tmp_path: Path) -> dict[str, str]:
    """An environment with none of the example's variables and no overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALDESK_", "SLACK_", "WHATSAPP_",
                                                                     "MESSENGER_", "LINE_", "WECHAT_", "X_"))}
    env.pop("PORT", None)
    return env


def test_the_example_configuration_starts_as_copied_with_no_environment_variables(tmp_path: Path) -> None:
    shutil.copy(ROOT / "socialdesk.example.toml", tmp_path / "socialdesk.toml")
    env = {**clean_env(tmp_path), "PORT": str(_free_port())}
    server = subprocess.Popen([sys.executable, "-m", "socialdesk.cli", "serve"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not owner.is_running(tmp_path / "data" / "socialdesk.duckdb"):
            assert server.poll() is None, (server.stderr.read() if server.stderr else b"").decode()[-2000:]
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(20)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("text", "message"), [
    ("[slack]\nenabeld = true\n", r"\[slack\]: unknown key 'enabeld'"),
    ("[slak]\n", r"unknown section \[slak\]"),
    ('[slack]\nbot_token = "xoxb-1"\nsigning_secret = "s"\nagents = "U1"\n', r"\[slack\] agents: expected array"),
    ('[slack]\nbot_token = "xoxb-1"\n', r"\[slack\] signing_secret: missing"),
    ('[store]\nmemory_limit = "lots"\n', r'\[store\] memory_limit: expected a size such as "1GB"'),
    ("[store]\nthreads = 0\n", r"\[store\] threads: expected int >= 1"),
    ('[server]\nport = "3000"\n', r"\[server\] port: expected int, got str"),
    ("[server]\nwebhook_workers = -1\n", r"\[server\] webhook_workers: expected int >= 0"),
    ("[[template]]\nlanguage = \"fr\"\n", r"\[\[template\]\] #1: missing key name"),
    ("[whatsapp]\nname = \"x\"\n", r"\[\[whatsapp\]\] must be an array of tables"),
    ("[rules]\ninterval_seconds = 0\n", r"\[rules\] interval_seconds: expected float > 0"),
    ('[phones]\ndefault_region = "XX"\n', r"\[phones\] default_region: unknown phone region 'XX'"),
])
def test_a_mistake_is_one_line_naming_the_section_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        config.load(write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_agents_must_be_a_list_not_a_string_that_would_match_as_a_substring(tmp_path: Path) -> None:
    """`agents = "U1"` was once accepted and then matched as a substring: U1 in "U1"... and in "XU1Y"."""
    with pytest.raises(ConfigError, match="agents"):
        config.load(write(tmp_path, '[slack]\nbot_token = "b"\nsigning_secret = "s"\nagents = "U1"\n'))


def test_port_and_store_overrides_are_checked(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(ConfigError, match="PORT must be a port number"):
        config.load(write(tmp_path, ""))
    monkeypatch.delenv("PORT")
    monkeypatch.setenv("SOCIALDESK_DB", str(tmp_path / "no-such-dir" / "desk.duckdb"))
    with pytest.raises(ConfigError, match="SOCIALDESK_DB: the directory .* does not exist"):
        config.load(write(tmp_path, ""))


def test_optional_features_do_not_need_their_secrets_until_used(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("UNSET_QUACK", raising=False)
    monkeypatch.delenv("UNSET_MEDIA", raising=False)
    cfg = config.load(write(tmp_path, '[store]\nquack_token = "${UNSET_QUACK}"\n'
                                      '[server]\nmedia_secret = "${UNSET_MEDIA}"\n'))
    assert (cfg.store.quack_token, cfg.server.media_secret) == ("", "")


def test_commands_other_than_serve_do_not_need_channel_or_slack_secrets(tmp_path: Path, monkeypatch: Any,
                                                                         capsys: Any) -> None:
    monkeypatch.delenv("NEVER_SET_SECRET", raising=False)
    monkeypatch.delenv("SOCIALDESK_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    file = write(tmp_path, '[store]\npath = "desk.duckdb"\n[slack]\nbot_token = "${NEVER_SET_SECRET}"\n'
                           'signing_secret = "${NEVER_SET_SECRET}"\n[[whatsapp]]\nname = "paris"\n'
                           'phone_number_id = "1"\napp_secret = "${NEVER_SET_SECRET}"\n')
    assert main(["search", "+33612345678", "--config", str(file), "--json"]) == 0
    assert main(["serve", "--config", str(file)]) == 1
    assert "NEVER_SET_SECRET is not set" in capsys.readouterr().err
