"""How other processes on this machine reach the process that owns a store file.

DuckDB lets one process write a file; while `socialdesk serve` holds it, the CLI, the notebooks and
the webhook workers talk to that process instead, through Unix domain sockets beside the store:
`{store}.admin.sock` (CLI operations, where notebooks find the live store) and `{store}.workers.sock`
(webhook workers). The service creates them with a umask of 077 in a directory of its own, so only
its user can connect: the file system is the authentication, and nothing else (no loopback port, no
token in a file) has to be trusted.

The client side here is synchronous (`http.client` over the socket): the CLI and notebooks are.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any


def admin_socket(store_path: str | Path) -> Path:
    return Path(f"{store_path}.admin.sock")


def workers_socket(store_path: str | Path) -> Path:
    return Path(f"{store_path}.workers.sock")


class NotRunning(RuntimeError):
    """No process answers on the store's admin socket."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def call(store_path: str | Path, path: str, payload: Any = None, *, timeout: float = 60) -> tuple[int, Any]:
    """POST `payload` as JSON to the store's owner; (status, parsed JSON answer). NotRunning if none answers."""
    conn = _UnixConnection(admin_socket(store_path), timeout)
    try:
        conn.request("POST", path, body=json.dumps(payload if payload is not None else {}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise NotRunning(f"no service owns {store_path}") from exc
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body or b"null")
    except ValueError:
        return resp.status, {"error": body.decode(errors="replace")[:200]}


def is_running(store_path: str | Path) -> bool:
    """Whether a process answers on the store's admin socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(admin_socket(store_path)))
        return True
    except OSError:
        return False
    finally:
        sock.close()
