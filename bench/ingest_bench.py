"""Ingest: signed WhatsApp webhooks from a separate load generator (wrk with a Lua script, pre-signed
requests) through verification, durable commit and ticket creation, beside a bare aiohttp handler
measured in the same run. Then p50/p99 at a fixed 1,000 messages/s (WhatsApp's highest per-number rate).

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


def main(argv: list[str]) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("the ingest benchmark needs wrk (apt-get install wrk)")
    seconds, threads, connections = 15, 1, 512
    work = Path(tempfile.mkdtemp(prefix="socialdesk-bench-"))
    sandbox = Sandbox()
    asyncio.run(sandbox.start())
    asyncio.run(sandbox.stop())  # only the accounts and their signing are needed
    print("pre-signing webhooks...", flush=True)
    reqs = _requests(sandbox, 120_000)
    data = work / "requests.tsv"
    data.write_bytes(b"".join(f"{p}\t{s}\t".encode() + b + b"\n" for p, s, b in reqs))
    script = work / "post.lua"
    script.write_text(LUA)
    config = work / "bench.toml"
    config.write_text(toml(sandbox.channels, '[store]\nmemory_limit = "1GB"\nthreads = 2\n'))

    results: dict[str, Any] = {}
    port = free_port()
    bare = start(["-m", "bench.bare_server", str(port)], {}, Path.cwd())
    try:
        wait_up(port, bare)
        results["bare"] = _wrk(f"http://127.0.0.1:{port}", script, data, threads, seconds, connections)
    finally:
        bare.terminate()
        bare.wait()

    port = free_port()
    env = {"PORT": str(port), "SOCIALDESK_CONFIG": str(config), "SOCIALDESK_DB": str(work / "bench.duckdb")}
    service = start(["-m", "socialdesk.cli", "serve"], env, work)
    try:
        wait_up(port, service)
        results["socialdesk"] = _wrk(f"http://127.0.0.1:{port}", script, data, threads, seconds, connections)
        results["socialdesk"]["rss_mib"] = rss_mib(service.pid)
        fresh = _requests(sandbox, 10_000, offset=500_000)
        results["fixed_rate"] = asyncio.run(_fixed_rate(f"http://127.0.0.1:{port}", fresh, 1000))
    finally:
        service.terminate()
        service.wait()
    con = duckdb.connect(str(work / "bench.duckdb"), read_only=True)
    results["stored_messages"] = con.execute("SELECT count(*) FROM comments").fetchone()[0]
    results["tickets"] = con.execute("SELECT count(*) FROM tickets").fetchone()[0]
    con.close()
    s, b = results["socialdesk"], results["bare"]
    results["ratio_to_bare"] = s["requests_per_s"] / b["requests_per_s"]
    print(table([("bare aiohttp handler", b["requests_per_s"], b["p50_ms"], b["p99_ms"]),
                 ("socialdesk (verify+commit+ticket)", s["requests_per_s"], s["p50_ms"], s["p99_ms"]),
                 ("socialdesk at a fixed 1,000/s", float(results["fixed_rate"]["rate"]),
                  results["fixed_rate"]["p50_ms"], results["fixed_rate"]["p99_ms"])],
                ("run", "messages/s", "p50 ms", "p99 ms")))
    print(f"ratio to bare: {results['ratio_to_bare']:.0%}  (target >= 25%);  stored {results['stored_messages']:,} "
          f"messages in {results['tickets']:,} tickets; service RSS {s['rss_mib']:.0f} MiB")
    print(f"written to {write('ingest', results)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main([])
