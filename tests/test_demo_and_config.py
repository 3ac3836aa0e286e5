"""The first run (`socialdesk demo`) and the configuration file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from connectors import registry
from connectors.base import ConfigError
from socialdesk import config
from socialdesk.demo import conversations

ROOT = Path(__file__).resolve().parents[1]


def test_the_demo_drives_every_channel_and_shows_the_notifier(tmp_path: Path) -> None:
    env = {**os.environ, "PORT": "0"}
    env.pop("SOCIALDESK_DB", None)
    out = subprocess.run([sys.executable, "-m", "socialdesk.cli", "demo", "--once"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    messages = conversations()
    assert {m.channel for m in messages} == set(registry.names())  # every channel has its demo traffic
    # Every message, one redelivery and two Slack requests.
    assert text.count("→ HTTP 200") == len(messages) + 3
    assert "stored once" in text
    assert "failed (The 24-hour messaging window closed" in text  # one reply meets a closed window (R22)
    queued = sum(1 for m in messages if m.reply) - 1
    assert f"the outbox delivered {queued} of {queued} replies" in text
    assert "delivery and read receipts came back" in text and "merged" in text
    assert "Assigned to you" in text and "Unassigned  (red dot" in text
    assert "/social unassigned → HTTP 200" in text
    tickets = len({(m.channel, m.account, m.user) for m in messages})
    assert f"{tickets} ticket cards in the triage channel" in text
    assert "Slack refused nothing" in text
    assert (tmp_path / "data" / "demo.duckdb").exists()


def uncommented(text: str) -> str:
    """The example with every switched-off section switched on, as an operator uncomments it."""
    return "\n".join(line[2:] if re.match(r"^# (\[|[a-z_]+ = )", line) else line for line in text.splitlines())


def test_the_example_configuration_is_complete_and_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = uncommented((ROOT / "socialdesk.example.toml").read_text())
    for name in {part.split("}")[0] for part in text.split("${")[1:]}:
        monkeypatch.setenv(name, "x" * 43 if "AES" in name else "secret-" + name.lower())
    monkeypatch.setenv("WECHAT_ENCODING_AES_KEY", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")
    (tmp_path / "full.toml").write_text(text)
    cfg = config.load(tmp_path / "full.toml")
    built = registry.build(cfg.channels)
    assert sorted(built) == sorted(registry.names())  # every channel has its commented-out section
    assert cfg.slack.enabled and cfg.store.threads == 2 and cfg.templates[0]["name"] == "order_update"


def test_a_missing_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    file = tmp_path / "c.toml"
    file.write_text('[slack]\nbot_token = "${NOT_SET_ANYWHERE}"\n')
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        config.load(file)


def test_a_missing_account_key_names_the_account_and_the_key(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[[whatsapp]]\nname = "paris"\nphone_number_id = "1"\n')
    with pytest.raises(ConfigError, match=r"paris.*(app_secret|display_phone_number|verify_token|access_token)"):
        registry.build(config.load(file).channels)


def test_secrets_never_appear_in_a_configuration_error(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[[wechat]]\nname = "cn"\noriginal_id = "gh_1"\napp_id = "wx1"\napp_secret = "S3CR3T"\n'
                    'token = "T0K3N"\nencoding_aes_key = "too-short-K3Y"\n')
    with pytest.raises(ConfigError) as err:
        registry.build(config.load(file).channels)
    assert not any(s in str(err.value) for s in ("S3CR3T", "T0K3N", "too-short-K3Y"))
