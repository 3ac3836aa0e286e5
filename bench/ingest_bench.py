"""Ingest: signed webhooks of the busiest channel (WhatsApp) from a separate load generator (wrk with a
Lua script, pre-signed requests) through verification and the durable append to the log (the acknowledgement), with the
tickets built right behind, beside a bare aiohttp handler measured in the same run, each at 128 to
2,048 connections (a fresh store for every run), peak against peak: the bare handler peaks at few
connections, the store at many, where group commit gathers more messages per commit. SocialDesk runs
as one process, with one and two webhook workers, and with two and its ticket builder at
nice 10 (`[store] build_nice`).

Then, for each: the acknowledgement's p50/p99 at a fixed 1,000 webhooks/s (WhatsApp's highest
per-number rate) and, in the same run, how long until the ticket is visible to a reader (the
notifier's queries), polled over Quack every 20 ms; and a burst at the peak's connection count: how
long the backlog it leaves in the log takes to drain once the burst stops, with the p99 lag from
log to tickets (the service's own `socialdesk_ingest_lag_seconds` histogram). The service's resident
memory (store process and workers) is sampled throughout, the store's DuckDB limited to MEMORY_LIMIT.

Targets (issue 15), as ratios measured in the same run: ack p99 < 50 ms at 1,000/s; webhook to ticket
visible p99 < 250 ms at 1,000/s; >= 40 % of the bare handler at 512 connections; >= 50 % of its peak;
a 60 s burst at the peak drains in < 60 s; service RSS < 1 GiB.

`python -m bench ingest [--seconds 10] [--burst-seconds 60] [--levels 128,256,...] [--fixed 10000]`
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import free_port, rss_mib, start, table, toml, wait_up, write
from socialdesk.sandbox import ACCOUNTS, BUSIEST, Sandbox
from warehouse import owner, samples
from warehouse.connect import connect

LUA = r"""
local requests = {}
local next_index = 1
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  local count = tonumber(args[2])
  local i = 0
  for line in io.lines(args[1]) do
    if i % count == tid then
      local path, sig, body = line:match("([^\t]*)\t([^\t]*)\t(.*)")
      table.insert(requests, wrk.format("POST", path,
        {["Content-Type"] = "application/json", ["SIGNATURE_HEADER"] = sig}, body))
    end
    i = i + 1
  end
end
function request()
  local r = requests[next_index]
  next_index = next_index % #requests + 1
  return r
end
"""

LEVELS = (128, 256, 512, 1024, 2048)  # wrk connections: each server is measured at each
SECONDS = 10
BURST_SECONDS = 60
FIXED = 10_000  # webhooks sent at 1,000/s
RATE = 1000
POLL_SECONDS = 0.02  # how often the visibility probe reads the live store
# The store's DuckDB memory limit in every configuration. A 60 s burst at the peak leaves 600,000 webhooks
# (about 800 MB of raw bodies) in the log, which the builder then reads back: with the default 1 GB the service
# peaked at 1.15 to 1.23 GiB while draining it, with 384 MB at 0.94 GiB and no slower.
MEMORY_LIMIT = "384MB"
# name: (webhook workers, [store] build_nice)
SERVICES = {"socialdesk, 1 process": (0, 0), "socialdesk + 1 webhook worker": (1, 0),
            "socialdesk + 2 webhook workers": (2, 0), "socialdesk + 2 webhook workers, build_nice 10": (2, 10)}


# The webhooks go to the busiest channel's first two demo accounts, alternately.
PAIR = ACCOUNTS[BUSIEST][:2]


def _requests(sandbox: Sandbox, n: int, offset: int = 0) -> Iterator[tuple[str, str, str, bytes]]:
    """(message id, path, signature, body) of `n` signed webhooks from 5,000 customers."""
    now = datetime.now(UTC)
    header = _signature_header(sandbox)
    for i in range(offset, offset + n):
        account = PAIR[(i + 1) % len(PAIR)]
        mid = f"wamid.bench.{i}"
        body = sandbox.message(BUSIEST, account, f"336{i % 5000:08d}", f"Bonjour, commande {i}", mid, now,
                               f"Customer {i % 5000}")
        req = sandbox.request(BUSIEST, account, body)
        yield mid, req.path, req.headers[header], req.body


def _signature_header(sandbox: Sandbox) -> str:
    """The one header that signs the channel's webhooks: wrk and the fixed-rate sender replay it beside
    Content-Type (a channel signing in the query or in several headers would need more than this)."""
    req = sandbox.request(BUSIEST, PAIR[0], sandbox.message(BUSIEST, PAIR[0], "33600000000", "probe", "probe",
                                                            datetime.now(UTC), "Probe"))
    [header] = [h for h in req.headers if h.lower() != "content-type"]
    if req.query:
        raise SystemExit(f"the ingest benchmark replays header-signed webhooks; {BUSIEST}'s are signed in the query")
    return header


def _paths(sandbox: Sandbox) -> list[str]:
    """The webhook routes the requests go to (the bare handler answers these)."""
    return sorted({path for _, path, _, _ in _requests(sandbox, len(PAIR))})


def _write_requests(sandbox: Sandbox, path: Path, n: int, offset: int) -> Path:
    with path.open("wb") as f:
        for _, p, s, b in _requests(sandbox, n, offset):
            f.write(f"{p}\t{s}\t".encode() + b + b"\n")
    return path


def _wrk(url: str, script: Path, data: Path, threads: int, seconds: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(script), url, "--", str(data), str(threads)],
                         capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": ms("50"), "p99_ms": ms("99"), "requests": total,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def _service_rss(pid: int) -> float:
    """The store process and its webhook workers together."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        pids = [pid, *(int(c) for c in children.read_text().split())] if children.exists() else [pid]
        return sum(rss_mib(p) for p in pids)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return float("nan")


@contextmanager
def _rss_peak(pid: int) -> Iterator[list[float]]:
    """The highest resident memory seen while the block runs (sampled every 0.2 s)."""
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            rss = _service_rss(pid)
            if rss == rss:  # not NaN
                peak[0] = max(peak[0], rss)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def _log_status(db: Path) -> dict[str, Any]:
    status, answer = owner.call(db, "/admin/ops/log_status", {}, timeout=30)
    if status != 200:
        raise RuntimeError(f"log_status answered {status}: {answer}")
    return dict(answer)


def _drain(db: Path, timeout: float = 600) -> float:
    """Seconds until every logged webhook is a ticket."""
    started = time.monotonic()
    while _log_status(db)["waiting"]:
        if time.monotonic() - started > timeout:
            raise RuntimeError("the log did not drain")
        time.sleep(0.1)
    return time.monotonic() - started


def _metrics(port: int) -> str:
    async def get() -> str:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            return await resp.text()
    return asyncio.run(get())


def histogram_quantile(metrics: str, name: str, q: float) -> float:
    """Prometheus' histogram_quantile over one unlabelled histogram of a /metrics page (linear in a bucket)."""
    buckets = sorted((float("inf") if le == "+Inf" else float(le), float(v)) for le, v in
                     re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}} ([\d.e+]+)$', metrics, re.M))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return lower


class _Visibility:
    """Polls the live store over Quack (read-only, as notebooks do) and notes when each message is a
    ticket's comment."""

    def __init__(self, db: Path) -> None:
        self.con = connect(path=db, live=True)
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._last = 0

    def __enter__(self) -> _Visibility:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.con.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            rows = samples.messages_after(self.con, self._last)
            now = time.perf_counter()
            for cid, mid in rows:
                self.seen.setdefault(mid, now)
                self._last = max(self._last, cid)


async def _fixed_rate(url: str, reqs: list[tuple[str, str, str, bytes]], rate: int, header: str) -> dict[str, Any]:
    latencies: list[float] = []
    sent: dict[str, float] = {}
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:
        async def one(mid: str, path: str, sig: str, body: bytes) -> None:
            nonlocal errors
            t = time.perf_counter()
            sent[mid] = t
            async with http.post(url + path, data=body, headers={"Content-Type": "application/json",
                                                                 header: sig}) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - t) * 1000)
        start_at = time.perf_counter()
        tasks = []
        for i, r in enumerate(reqs):
            delay = start_at + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(*r)))
        await asyncio.gather(*tasks)
    latencies.sort()
    return {"rate": rate, "sent": len(reqs), "errors": errors, "p50_ms": statistics.median(latencies),
            "p99_ms": _p(latencies, 0.99), "sent_at": sent}


def _p(values: list[float], q: float) -> float:
    return values[max(0, int(len(values) * q) - 1)] if values else float("nan")


@contextmanager
def _service(work: Path, config: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """A fresh store each time (a second pass over the requests would measure duplicates)."""
    db = work / f"bench-{time.monotonic_ns()}.duckdb"
    port = free_port()
    service = start(["-m", "socialdesk.cli", "serve"],
                    {"PORT": str(port), "SOCIALDESK_CONFIG": str(config), "SOCIALDESK_DB": str(db)}, work)
    try:
        wait_up(port, service)
        time.sleep(1)  # the workers, if any, finish starting
        yield service, port, db
    finally:
        service.terminate()
        service.wait(120)
        for f in work.glob(db.name + "*"):
            f.unlink()


def _stored(db: Path) -> int:
    """Messages stored, read from the live store over Quack."""
    con = connect(path=db, live=True)
    try:
        return samples.messages_stored(con)
    finally:
        con.close()


def _level(work: Path, config: Path, script: Path, data: Path, seconds: int, connections: int) -> dict[str, Any]:
    with _service(work, config) as (service, port, db), _rss_peak(service.pid) as rss:
        result = _wrk(f"http://127.0.0.1:{port}", script, data, 1, seconds, connections)
        result["backlog_after"] = _log_status(db)["waiting"]
        result["drained_s"] = _drain(db)
        result["stored_messages"] = _stored(db)
        result["rss_mib"] = rss[0]
    return result


def _fixed(work: Path, config: Path, reqs: list[tuple[str, str, str, bytes]], header: str) -> dict[str, Any]:
    with _service(work, config) as (service, port, db), _rss_peak(service.pid) as rss:
        with _Visibility(db) as probe:
            result = asyncio.run(_fixed_rate(f"http://127.0.0.1:{port}", reqs, RATE, header))
            _drain(db)
            time.sleep(3 * POLL_SECONDS)
        sent = result.pop("sent_at")
        metrics = _metrics(port)
        result["round_p50_ms"] = histogram_quantile(metrics, "socialdesk_ingest_round_seconds", 0.5) * 1000
        result["round_p99_ms"] = histogram_quantile(metrics, "socialdesk_ingest_round_seconds", 0.99) * 1000
        result["round_entries_p50"] = histogram_quantile(metrics, "socialdesk_ingest_round_entries", 0.5)
        visible = sorted((probe.seen[m] - t) * 1000 for m, t in sent.items() if m in probe.seen)
        result.update(visible_p50_ms=statistics.median(visible) if visible else float("nan"),
                      visible_p99_ms=_p(visible, 0.99), visible_count=len(visible), rss_mib=rss[0])
    return result


def _burst(work: Path, config: Path, script: Path, data: Path, seconds: int, connections: int) -> dict[str, Any]:
    with _service(work, config) as (service, port, db), _rss_peak(service.pid) as rss:
        result = _wrk(f"http://127.0.0.1:{port}", script, data, 1, seconds, connections)
        result["connections"] = connections
        result["backlog_after"] = _log_status(db)["waiting"]
        result["drained_s"] = _drain(db)
        metrics = _metrics(port)
        result["lag_p50_s"] = histogram_quantile(metrics, "socialdesk_ingest_lag_seconds", 0.5)
        result["lag_p99_s"] = histogram_quantile(metrics, "socialdesk_ingest_lag_seconds", 0.99)
        result["rss_mib"] = rss[0]
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=SECONDS, help="each wrk run (default 10)")
    parser.add_argument("--burst-seconds", type=int, default=BURST_SECONDS, help="the burst (default 60)")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="wrk connections, comma-separated")
    parser.add_argument("--fixed", type=int, default=FIXED, help="webhooks sent at 1,000/s (default 10,000)")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    if not shutil.which("wrk"):
        raise SystemExit("the ingest benchmark needs wrk (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="socialdesk-bench-"))
    sandbox = Sandbox()
    asyncio.run(sandbox.start())
    asyncio.run(sandbox.stop())  # only the accounts and their signing are needed
    print("pre-signing webhooks...", flush=True)
    data = _write_requests(sandbox, work / "requests.tsv", max(150_000, 16_000 * args.seconds), 0)
    script = work / "post.lua"
    script.write_text(LUA.replace("SIGNATURE_HEADER", _signature_header(sandbox)))
    configs = {}
    for name, (workers, nice) in SERVICES.items():
        configs[name] = work / f"bench-{workers}-{nice}.toml"
        configs[name].write_text(toml(sandbox.channels, f'[store]\nmemory_limit = "{MEMORY_LIMIT}"\nthreads = 2\n'
                                      f'build_nice = {nice}\n[server]\nwebhook_workers = {workers}\n'))

    results: dict[str, Any] = {"levels": levels, "seconds": args.seconds, "burst_seconds": args.burst_seconds,
                               "memory_limit": MEMORY_LIMIT,
                               "runs": {}}
    for connections in levels:
        print(f"{connections} connections...", flush=True)
        port = free_port()
        bare = start(["-m", "bench.bare_server", str(port), *_paths(sandbox)], {}, Path.cwd())
        try:
            wait_up(port, bare)
            results["runs"].setdefault("bare aiohttp handler", {})[connections] = _wrk(
                f"http://127.0.0.1:{port}", script, data, 1, args.seconds, connections)
        finally:
            bare.terminate()
            bare.wait()
        for name, config in configs.items():
            results["runs"].setdefault(name, {})[connections] = _level(work, config, script, data, args.seconds,
                                                                       connections)
    print("at a fixed 1,000/s...", flush=True)
    fresh = list(_requests(sandbox, args.fixed, offset=5_000_000))
    header = _signature_header(sandbox)
    results["fixed_rate"] = {name: _fixed(work, config, fresh, header) for name, config in configs.items()}

    peaks = {name: max(runs.items(), key=lambda kv: kv[1]["requests_per_s"]) for name, runs in results["runs"].items()}
    bare_peak = peaks["bare aiohttp handler"][1]["requests_per_s"]
    results["peaks"] = {name: {"connections": c, "requests_per_s": r["requests_per_s"],
                               "ratio_to_bare_peak": r["requests_per_s"] / bare_peak} for name, (c, r) in peaks.items()}
    # The burst: every webhook new (a replayed one is cheaper to process), at each service's peak.
    results["burst"] = {}
    for name, config in configs.items():
        connections = peaks[name][0]
        count = int(peaks[name][1]["requests_per_s"] * args.burst_seconds * 1.2) + 1000
        print(f"burst: {name}, {args.burst_seconds} s at {connections} connections ({count:,} webhooks)...",
              flush=True)
        burst_data = _write_requests(sandbox, work / "burst.tsv", count, 10_000_000)
        results["burst"][name] = _burst(work, config, script, burst_data, args.burst_seconds, connections)
        burst_data.unlink()

    rows = [(f"{name} @ {c}", r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["non_2xx"],
             f"{r.get('backlog_after', '')}", f"{r['rss_mib']:.0f}" if "rss_mib" in r else "")
            for name, runs in results["runs"].items() for c, r in runs.items()]
    rows += [(f"{name} @ fixed 1,000/s", float(r["rate"]), r["p50_ms"], r["p99_ms"], r["errors"], "",
              f"{r['rss_mib']:.0f}") for name, r in results["fixed_rate"].items()]
    print(table(rows, ("run @ connections", "acks/s", "p50 ms", "p99 ms", "errors", "backlog", "RSS MiB")))
    at = 512 if 512 in levels else levels[len(levels) // 2]
    bare_at = results["runs"]["bare aiohttp handler"][at]["requests_per_s"]
    summary = []
    for name in configs:
        fixed, burst, peak = results["fixed_rate"][name], results["burst"][name], results["peaks"][name]
        mine = results["runs"][name][at]["requests_per_s"]
        rss = max([r["rss_mib"] for r in results["runs"][name].values()] + [fixed["rss_mib"], burst["rss_mib"]])
        summary.append({
            "service": name, "ack_p50_ms": fixed["p50_ms"], "ack_p99_ms": fixed["p99_ms"],
            "visible_p50_ms": fixed["visible_p50_ms"], "visible_p99_ms": fixed["visible_p99_ms"],
            "at_connections": at, "acks_per_s": mine, "bare_per_s": bare_at, "ratio_at": mine / bare_at,
            "peak_per_s": peak["requests_per_s"], "peak_connections": peak["connections"],
            "ratio_to_bare_peak": peak["ratio_to_bare_peak"], "burst_connections": burst["connections"],
            "burst_acks_per_s": burst["requests_per_s"], "burst_backlog": burst["backlog_after"],
            "burst_drained_s": burst["drained_s"], "lag_p99_s": burst["lag_p99_s"], "rss_mib": rss})
    results["summary"] = summary
    print()
    for s in summary:
        print(f"{s['service']}:\n"
              f"  ack at a fixed 1,000/s: p50 {s['ack_p50_ms']:.0f} ms, p99 {s['ack_p99_ms']:.0f} ms (target < 50 ms)\n"
              f"  webhook to ticket visible at 1,000/s: p50 {s['visible_p50_ms']:.0f} ms, "
              f"p99 {s['visible_p99_ms']:.0f} ms (target < 250 ms; polled every {POLL_SECONDS * 1000:.0f} ms)\n"
              f"  at {s['at_connections']} connections: {s['acks_per_s']:,.0f}/s against the bare handler's "
              f"{s['bare_per_s']:,.0f}/s ({s['ratio_at']:.0%}; target >= 40 %)\n"
              f"  peak: {s['peak_per_s']:,.0f}/s at {s['peak_connections']} connections, {s['ratio_to_bare_peak']:.0%} "
              f"of the bare handler's peak ({bare_peak:,.0f}/s; target >= 50 %)\n"
              f"  burst of {args.burst_seconds} s at {s['burst_connections']} connections "
              f"({s['burst_acks_per_s']:,.0f}/s): {s['burst_backlog']:,} waiting at its end, drained in "
              f"{s['burst_drained_s']:.1f} s (target < 60 s); lag p99 {s['lag_p99_s']:.1f} s\n"
              f"  service RSS, highest seen: {s['rss_mib']:.0f} MiB (target < 1 GiB)")
    print(f"written to {write('ingest', results)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
