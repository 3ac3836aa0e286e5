"""Read-only connections to the store for notebooks and reports: the live service over Quack, else the file.

DuckDB lets one process write a file and, while it does, no other process may open it. The service
therefore serves its database over DuckDB's Quack protocol (`serve_quack`, on loopback with a
token) and a reader attaches it as the catalog `desk`; `USE desk` makes the report SQL's
unqualified table names resolve there. When no service answers, the file is opened read-only,
where the same names resolve to the file's own tables. Either way a reader never writes: the live
store is attached READ_ONLY (the client refuses INSERT; without it a remote INSERT goes through) and
the file is opened read-only.

The Quack and httpfs extensions come from the PyPI wheels `duckdb-extension-quack` and
`duckdb-extension-httpfs`, pinned to the DuckDB release; DuckDB's own extension download is not
used (it is unreachable here). Both ends load httpfs, then quack.

This module reads the `[store]` section of the configuration itself (tomllib) rather than import
the composition root, so the warehouse keeps depending on nothing above it.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from warehouse import owner
from warehouse.store import StoreBusy, open_connection

LIVE_CATALOG = "desk"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class NoStore(RuntimeError):
    """Neither the service answers over Quack nor is there a store file to open."""


def extension_path(name: str) -> str:
    """The extension file the `duckdb-extension-<name>` wheel installed, for this DuckDB version."""
    version = duckdb.__version__
    path = resources.files(f"duckdb_extension_{name}") / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise RuntimeError(f"duckdb-extension-{name}=={version} is not installed (expected {path})")
    return str(path)


def load_quack(con: duckdb.DuckDBPyConnection) -> None:
    """Load httpfs and quack into this database instance from the wheels' files."""
    for name in ("httpfs", "quack"):
        con.execute(f"LOAD '{extension_path(name)}'")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# Quack asks this function about every query a client sends (`quack_authorization_function`). Readers
# may run SELECTs over the store's own tables and views and the catalog functions the Quack client
# uses, nothing else: no statement but SELECT (json_serialize_sql serializes SELECTs only), no table
# function outside the list (read_text, read_csv, glob, quack_query, ... are refused), and no table
# name that is a file path (DuckDB reads `FROM '/etc/passwd'` as a file). Every table-function and
# table node of the parsed query must match its pattern, so a node the patterns miss is refused too.
READ_ONLY_MACRO = "socialdesk_read_only"
_TABLE_FUNCTIONS = ("duckdb_tables", "duckdb_views", "duckdb_columns", "duckdb_schemas", "duckdb_databases",
                    "duckdb_indexes", "duckdb_constraints", "duckdb_types", "duckdb_functions", "unnest", "range",
                    "generate_series")
_READ_ONLY_SQL = f"""
CREATE OR REPLACE MACRO {READ_ONLY_MACRO}(sid, query) AS (
    WITH parsed AS (SELECT json_serialize_sql(query::VARCHAR) AS j)
    SELECT NOT coalesce((j::JSON ->> 'error')::BOOLEAN, true)
       AND len(regexp_extract_all(j, '"type":"TABLE_FUNCTION"'))
         = len(list_filter(
               regexp_extract_all(j, '"type":"TABLE_FUNCTION","alias":"[^"\\\\]*","sample":null,'
                                     '"query_location":[0-9]+,"function":[{{]"class":"FUNCTION","type":"FUNCTION",'
                                     '"alias":"[^"\\\\]*","query_location":[0-9]+,"function_name":"([a-z_]+)"',
                                  1),
               f -> list_contains({list(_TABLE_FUNCTIONS)}, f)))
       AND len(regexp_extract_all(j, '"type":"BASE_TABLE"'))
         = len(regexp_extract_all(j, '"type":"BASE_TABLE","alias":"[^"\\\\]*","sample":null,'
                                     '"query_location":[0-9]+,"schema_name":"[A-Za-z_]*",'
                                     '"table_name":"[A-Za-z_][A-Za-z0-9_]*","column_name_alias"'))
    FROM parsed
)"""


def serve_quack(con: duckdb.DuckDBPyConnection, host: str = "127.0.0.1", port: int = 9494,
                token: str = "", *, allow_other_hostname: bool = False) -> str:
    """Serve this connection's database over Quack (plain HTTP) at host:port, read-only; returns the URI.

    The service calls it once at start-up with the store's connection. Readers must present `token`
    and may run reads only (`READ_ONLY_MACRO`). A host other than loopback is refused unless
    `allow_other_hostname` (the operator's explicit choice).
    """
    if not token:
        raise ValueError("a Quack token is required: set [store] quack_token")
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if not loopback and not allow_other_hostname:
        raise ValueError(f"Quack serves on loopback only; {host!r} needs allow_other_hostname")
    load_quack(con)
    # The callback runs on a fresh server-side connection, so the macro lives in the database itself.
    con.execute(_READ_ONLY_SQL)
    con.execute(f"SET GLOBAL quack_authorization_function = {_literal(READ_ONLY_MACRO)}")
    uri = f"quack:{'localhost' if loopback else host}:{int(port)}"
    con.execute(f"CALL quack_serve({_literal(uri)}, token = {_literal(token)}, "
                f"allow_other_hostname = {str(allow_other_hostname).lower()}, disable_ssl = true)")
    return uri


def stop_quack(con: duckdb.DuckDBPyConnection, uri: str) -> None:
    con.execute(f"CALL quack_stop({_literal(uri)})")


@dataclass(slots=True)
class StoreSettings:
    """What a reader needs from `[store]`: the file, and where the live service serves it."""

    path: str = "data/socialdesk.duckdb"
    quack_host: str = "127.0.0.1"
    quack_port: int = 0
    quack_token: str = ""
    memory_limit: str = "1GB"
    # A notebook's own DuckDB: measured on a million tickets, the whole report suite peaks at 769 MiB of
    # process memory with 512 MB here and 1.7 GiB with 1 GB (the buffer pool fills to its limit).
    report_memory_limit: str = "512MB"
    threads: int = 2


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        # An unset variable leaves the value empty: a reader without the token falls back to the file.
        return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), value)
    return value


def store_settings(config_path: str | os.PathLike[str] | None = None) -> StoreSettings:
    """`[store]` from the configuration (`config_path`, `SOCIALDESK_CONFIG`, `socialdesk.toml`)."""
    explicit = config_path or os.environ.get("SOCIALDESK_CONFIG")
    file = Path(explicit or "socialdesk.toml")
    raw: dict[str, Any] = {}
    if file.exists():
        raw = tomllib.loads(file.read_text()).get("store", {})
    elif explicit:
        raise NoStore(f"configuration file {file} not found")
    known = StoreSettings.__dataclass_fields__
    settings = StoreSettings(**{k: _expand(v) for k, v in raw.items() if k in known})
    settings.quack_port = int(settings.quack_port or 0)
    if os.environ.get("SOCIALDESK_DB"):
        settings.path = os.environ["SOCIALDESK_DB"]
    return settings


def attach_live(host: str, port: int, token: str, *, memory_limit: str = "1GB",
                threads: int = 2) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the service's store attached as `desk` and made the default."""
    con = duckdb.connect(":memory:", config={"memory_limit": memory_limit, "threads": threads})
    try:
        load_quack(con)
        con.execute(f"CREATE SECRET quack_desk (TYPE quack, TOKEN {_literal(token)})")
        where = "localhost" if host in ("127.0.0.1", "localhost", "::1") else host
        # READ_ONLY: the client itself refuses writes (without it a remote INSERT would go through).
        con.execute(f"ATTACH {_literal(f'quack:{where}:{int(port)}')} AS {LIVE_CATALOG} (READ_ONLY)")
        con.execute(f"USE {LIVE_CATALOG}")
    except BaseException:
        con.close()
        raise
    return con


def live_settings(store_path: str) -> tuple[str, int, str] | None:
    """(host, port, token) of the live store, as the service that owns `store_path` serves it, if one does."""
    try:
        status, answer = owner.call(store_path, "/admin/ops/live", timeout=10)
    except (owner.NotRunning, OSError):
        return None
    if status != 200 or not isinstance(answer, dict) or not answer.get("uri"):
        return None
    _, host, port = str(answer["uri"]).split(":")
    return host, int(port), str(answer["token"])


def connect(config_path: str | os.PathLike[str] | None = None, *, path: str | os.PathLike[str] | None = None,
            quack_host: str | None = None, quack_port: int | None = None, quack_token: str | None = None,
            live: bool | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the store: the running service over Quack, else the file read-only.

    Settings come from the configuration's `[store]`; keyword arguments override them. The running
    service that owns the file says where it serves the store (its admin socket: readable by its user
    only); a configured Quack port and token are used as they are. `live=True` insists on the service
    (errors if it does not answer), `live=False` opens the file, `None` tries the service first. Report
    SQL uses unqualified table names, which resolve in either case.
    """
    s = store_settings(config_path)
    s.path = str(path) if path is not None else s.path
    s.quack_host = quack_host if quack_host is not None else s.quack_host
    s.quack_port = int(quack_port) if quack_port is not None else s.quack_port
    s.quack_token = quack_token if quack_token is not None else s.quack_token
    target = (s.quack_host, s.quack_port, s.quack_token) if s.quack_port and s.quack_token else None
    if target is None and live is not False:
        target = live_settings(s.path)
    if live and target is None:
        raise NoStore(f"no running service serves {s.path} (and no [store] quack_port and quack_token are set)")
    attach_error: Exception | None = None
    if target is not None and live is not False:
        try:
            return attach_live(*target, memory_limit=s.report_memory_limit, threads=s.threads)
        except duckdb.Error as exc:
            if live:
                raise
            attach_error = exc
    if not Path(s.path).exists():
        hint = f" (and the service did not answer over Quack: {attach_error})" if attach_error else ""
        raise NoStore(f"no store at {s.path}{hint}")
    try:
        return open_connection(s.path, read_only=True, memory_limit=s.report_memory_limit, threads=s.threads)
    except (StoreBusy, duckdb.ConnectionException):
        # ConnectionException: this very process holds the file for writing (the service's own tests).
        raise StoreBusy(f"the store {s.path} is held by a process that does not serve it to readers "
                        "(`socialdesk serve` with [store] quack = false?)") from None
