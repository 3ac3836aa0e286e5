"""Ingest: signed WhatsApp webhooks from a separate load generator (wrk with a Lua script, pre-signed
requests) through verification, durable commit and ticket creation, beside a bare aiohttp handler
measured in the same run, each at 128 to 2,048 connections (a fresh store for every run), peak
against peak: the bare handler peaks at few connections, the store at many, where group commit
gathers more messages per commit. Then p50/p99 at a fixed 1,000 messages/s (WhatsApp's highest
per-number rate). SocialDesk runs as one process and with one webhook worker.

Targets (issue 7): >= 25% of the bare handler's throughput, >= 4,000 messages/s, p99 < 100 ms at 1,000/s.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import duckdb

from bench.common import free_port, rss_mib, start, table, toml, wait_up, write
from socialdesk.sandbox import WHATSAPP_LYON, WHATSAPP_PARIS, Sandbox

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
        {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = sig}, body))
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


def _requests(sandbox: Sandbox, n: int, offset: int = 0) -> list[tuple[str, str, bytes]]:
    now = datetime.now(UTC)
    out = []
    for i in range(offset, offset + n):
        account = WHATSAPP_PARIS if i % 2 else WHATSAPP_LYON
        body = sandbox.message("whatsapp", account, f"336{i % 5000:08d}", f"Bonjour, commande {i}",
                               f"wamid.bench.{i}", now, f"Customer {i % 5000}")
        req = sandbox.request("whatsapp", account, body)
        out.append((req.path, req.headers["X-Hub-Signature-256"], req.body))
    return out


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


async def _fixed_rate(url: str, reqs: list[tuple[str, str, bytes]], rate: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:
        async def one(path: str, sig: str, body: bytes) -> None:
            nonlocal errors
            t = time.perf_counter()
            async with http.post(url + path, data=body, headers={"Content-Type": "application/json",
                                                                 "X-Hub-Signature-256": sig}) as resp:
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
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1]}


LEVELS = (128, 256, 512, 1024, 2048)  # wrk connections: each server is measured at each
SECONDS = 10
SERVICES = {"socialdesk, 1 process": 0, "socialdesk + 1 webhook worker": 1}


def _service_rss(pid: int) -> float:
    """The store process and its webhook workers together."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [pid, *(int(c) for c in children.read_text().split())] if children.exists() else [pid]
    return sum(rss_mib(p) for p in pids)


def _run_service(work: Path, config: Path, script: Path, data: Path, connections: int | None,
                 fixed: list[tuple[str, str, bytes]] | None = None) -> dict[str, Any]:
    """A fresh store each time (a second pass over the requests would measure duplicates)."""
    db = work / f"bench-{time.monotonic_ns()}.duckdb"
    port = free_port()
    service = start(["-m", "socialdesk.cli", "serve"],
                    {"PORT": str(port), "SOCIALDESK_CONFIG": str(config), "SOCIALDESK_DB": str(db)}, work)
    try:
        wait_up(port, service)
        time.sleep(1)  # the workers, if any, finish starting
        if fixed is not None:
            result = asyncio.run(_fixed_rate(f"http://127.0.0.1:{port}", fixed, 1000))
        else:
            result = _wrk(f"http://127.0.0.1:{port}", script, data, 1, SECONDS, connections or 1)
            result["rss_mib"] = _service_rss(service.pid)
    finally:
        service.terminate()
        service.wait()
    con = duckdb.connect(str(db), read_only=True)
    result["stored_messages"] = con.execute("SELECT count(*) FROM comments").fetchone()[0]
    con.close()
    for f in work.glob(db.name + "*"):
        f.unlink()
    return result


def main(argv: list[str]) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("the ingest benchmark needs wrk (apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="socialdesk-bench-"))
    sandbox = Sandbox()
    asyncio.run(sandbox.start())
    asyncio.run(sandbox.stop())  # only the accounts and their signing are needed
    print("pre-signing webhooks...", flush=True)
    reqs = _requests(sandbox, 150_000)
    data = work / "requests.tsv"
    data.write_bytes(b"".join(f"{p}\t{s}\t".encode() + b + b"\n" for p, s, b in reqs))
    script = work / "post.lua"
    script.write_text(LUA)
    configs = {}
    for name, workers in SERVICES.items():
        configs[name] = work / f"bench-{workers}.toml"
        configs[name].write_text(toml(sandbox.channels, '[store]\nmemory_limit = "1GB"\nthreads = 2\n'
                                                        f'[server]\nwebhook_workers = {workers}\n'))

    results: dict[str, Any] = {"levels": list(LEVELS), "seconds": SECONDS, "runs": {}}
    for connections in LEVELS:
        print(f"{connections} connections...", flush=True)
        port = free_port()
        bare = start(["-m", "bench.bare_server", str(port)], {}, Path.cwd())
        try:
            wait_up(port, bare)
            results["runs"].setdefault("bare aiohttp handler", {})[connections] = _wrk(
                f"http://127.0.0.1:{port}", script, data, 1, SECONDS, connections)
        finally:
            bare.terminate()
            bare.wait()
        for name, config in configs.items():
            results["runs"].setdefault(name, {})[connections] = _run_service(work, config, script, data, connections)
    fresh = _requests(sandbox, 10_000, offset=500_000)
    results["fixed_rate"] = {name: _run_service(work, config, script, data, None, fresh)
                             for name, config in configs.items()}

    peaks = {name: max(runs.items(), key=lambda kv: kv[1]["requests_per_s"]) for name, runs in results["runs"].items()}
    bare_peak = peaks["bare aiohttp handler"][1]["requests_per_s"]
    results["peaks"] = {name: {"connections": c, "requests_per_s": r["requests_per_s"],
                               "ratio_to_bare_peak": r["requests_per_s"] / bare_peak} for name, (c, r) in peaks.items()}
    rows = [(f"{name} @ {c}", r["requests_per_s"], r["p50_ms"], r["p99_ms"], r["non_2xx"])
            for name, runs in results["runs"].items() for c, r in runs.items()]
    rows += [(f"{name} @ fixed 1,000/s", float(r["rate"]), r["p50_ms"], r["p99_ms"], r["errors"])
             for name, r in results["fixed_rate"].items()]
    print(table(rows, ("run @ connections", "messages/s", "p50 ms", "p99 ms", "errors")))
    for name, peak in results["peaks"].items():
        print(f"peak {name}: {peak['requests_per_s']:,.0f}/s at {peak['connections']} connections "
              f"({peak['ratio_to_bare_peak']:.0%} of the bare handler's peak)")
    print("target: >= 25% of the bare handler and >= 4,000 messages/s; p99 < 100 ms at 1,000/s")
    print(f"written to {write('ingest', results)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main([])
