"""`socialdesk report` and the notebooks beside a running service with the default configuration
(issue 13): the service serves its store read-only over Quack and tells readers where, on its admin
socket; nobody has to configure a port or a token.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from socialdesk.reporting import NOTEBOOKS_DIR, run_report
from warehouse import owner
from warehouse.connect import connect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reports_run_while_the_service_holds_the_store(tmp_path: Path) -> None:
    store = tmp_path / "live.duckdb"
    env = {**os.environ, "SOCIALDESK_DB": str(store), "PORT": str(_free_port())}
    env.pop("SOCIALDESK_CONFIG", None)
    cli = [sys.executable, "-m", "socialdesk.cli"]
    server = subprocess.Popen([*cli, "serve"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not owner.is_running(store):
            assert server.poll() is None, (server.stderr.read() if server.stderr else b"").decode()[-2000:]
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        line = {"channel": "whatsapp", "account": "PN1", "user_id": "33612345678", "message_id": "wamid.live",
                "text": "Hello from the live store", "profile": {"name": "Ana"}}
        (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
        out = subprocess.run([*cli, "ingest", "in.jsonl"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr

        con = connect(path=store)  # what a notebook calls
        try:
            assert con.execute("SELECT count(*) FROM tickets").fetchone() == (1,)
        finally:
            con.close()
        books = tmp_path / "books"
        books.mkdir()
        shutil.copy(NOTEBOOKS_DIR / "volume.ipynb", books)
        [page] = run_report(out_dir=tmp_path / "reports", db_path=str(store), notebook_dir=books, workers=1)
        assert "Traceback" not in page.read_text()
    finally:
        server.terminate()
        server.wait(20)


def test_socialdesk_report_prints_no_kernel_noise(tmp_path: Path) -> None:
    """Quiet logs (issue 13): no kernel transport warning, no KeyboardInterrupt as kernels stop."""
    env = {**os.environ, "SOCIALDESK_DB": str(tmp_path / "d.duckdb")}
    env.pop("SOCIALDESK_CONFIG", None)
    cli = [sys.executable, "-m", "socialdesk.cli"]
    assert subprocess.run([*cli, "demo-data", "--tickets", "200"], cwd=tmp_path, env=env,
                          capture_output=True, timeout=120).returncode == 0
    out = subprocess.run([*cli, "report", "--out", str(tmp_path / "reports")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == ""
