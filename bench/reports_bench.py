"""Benchmark (not in CI): the whole report suite in DuckDB beside a pandas-only implementation (R28).

    .venv/bin/python bench/reports_bench.py --tickets 2000000 [--db data/bench.duckdb] [--seed 1]

Generates the store once (set-based demo data: about 5 comments a ticket, so 2 million tickets give
about 10 million comments), then measures each implementation in its own process, so peak memory
(max RSS) is each one's own: `duckdb` runs `warehouse.reports.all_reports` on the file opened
read-only; `pandas` loads the tables the reports need into DataFrames and computes the same
reports in pandas. Prints a table and writes JSON to bench/results/. Targets: DuckDB at least 10
times faster than pandas, under 1 GiB peak.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import connectors.registry  # noqa: F401  (registers the channels the reports and the demo data read)
from warehouse import channels

HERE = Path(__file__).resolve().parent
TAGS = {c.name: c.tag for c in channels.every()}  # R7: each channel's tag
UNSOLVED = ("new", "open", "pending", "hold")
BUCKETS = [(0, "< 1 h"), (1, "1-4 h"), (4, "4-24 h"), (24, "1-3 d"), (72, "3-7 d"), (168, "> 7 d")]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the DuckDB implementation ---------------------------------------------------------------------

def run_duckdb(db: str, start: date, end: date) -> dict[str, int]:
    from warehouse import reports
    from warehouse.store import open_connection

    # 512MB: DuckDB keeps file pages in its buffer pool up to the limit, which is most of the RSS.
    con = open_connection(db, read_only=True, memory_limit="512MB", threads=2)
    out = reports.all_reports(con, start, end)
    con.close()
    return {k: len(v) for k, v in out.items()}


# -- the pandas-only implementation ----------------------------------------------------------------

def _hours(a: pd.Series, b: pd.Series) -> pd.Series:
    return (b - a).dt.total_seconds() / 3600


def _bucket(hours: pd.Series) -> pd.Series:
    edges = [b for b, _ in BUCKETS] + [np.inf]
    return pd.cut(hours, edges, right=False, labels=[label for _, label in BUCKETS])


def run_pandas(db: str, start: date, end: date) -> dict[str, int]:
    import duckdb

    from warehouse import samples

    con = duckdb.connect(db, read_only=True, config={"memory_limit": "4GB", "threads": 2})
    loaded = samples.frames(con)
    con.close()
    tickets, events, outbox, users, accounts = (loaded[t] for t in ("tickets", "events", "outbox", "users", "accounts"))
    lo, hi = pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1)
    now = pd.Timestamp(datetime.now())
    out: dict[str, Any] = {}

    t = tickets.merge(accounts.rename(columns={"name": "account_name"}), on=["channel", "account"], how="left")
    t["account_name"] = t["account_name"].fillna(t["account"])
    social = t[t["tags"].map(lambda tags: "messaging_support" in tags)].copy()
    social["channel_tag"] = social["tags"].map(lambda tags: [x for x in tags if x in TAGS.values()] or ["untagged"])
    social = social.explode("channel_tag")
    in_range = social[(social["created_at"] >= lo) & (social["created_at"] < hi)]

    out["volume"] = in_range.groupby([in_range["created_at"].dt.floor("D"), "channel_tag", "account_name"]).size()
    fr = _hours(in_range["created_at"], in_range["first_reply_at"])
    rs = _hours(in_range["created_at"], in_range["solved_at"]).where(in_range["status"].isin(["solved", "closed"]))
    g = pd.DataFrame({"channel": in_range["channel_tag"], "fr": fr, "rs": rs}).groupby("channel")
    out["responsiveness"] = pd.concat([g["fr"].median(), g["fr"].quantile(0.9), g["rs"].median(),
                                       g["rs"].quantile(0.9)], axis=1)

    # Backlog day by day, from status and assignee events.
    ids = social.drop_duplicates("id")
    ids = ids[ids["created_at"] < hi]
    ev = events[events["ticket_id"].isin(ids["id"])]
    parsed = ev["data"].map(json.loads)
    changes = pd.DataFrame({
        "ticket_id": ev["ticket_id"], "ts": ev["created_at"], "seq": ev["id"],
        "status": np.where(ev["kind"] == "status_changed", parsed.map(lambda d: d.get("status")), None),
        "assignee": np.where(ev["kind"] == "assignee_changed",
                             parsed.map(lambda d: "" if d.get("assignee_id") is None else str(d.get("assignee_id"))),
                             None)})
    changes = changes[ev["kind"].isin(["status_changed", "assignee_changed"]).to_numpy()]
    init = pd.DataFrame({"ticket_id": ids["id"], "ts": ids["created_at"], "seq": -1, "status": "new", "assignee": ""})
    changes = pd.concat([init, changes]).sort_values(["ticket_id", "ts", "seq"])
    changes[["status", "assignee"]] = changes.groupby("ticket_id")[["status", "assignee"]].ffill()
    changes["until"] = changes.groupby("ticket_id")["ts"].shift(-1).fillna(pd.Timestamp("2200-01-01"))
    rows = []
    created = ids.set_index("id")["created_at"]
    for d in pd.date_range(lo, min(hi, now), freq="D", inclusive="left"):
        snap = min(d + pd.Timedelta(days=1), hi, now)
        st = changes[(changes["ts"] <= snap) & (changes["until"] > snap) & changes["status"].isin(UNSOLVED)]
        st = st.merge(social[["id", "channel_tag"]], left_on="ticket_id", right_on="id")
        st["age"] = _bucket(_hours(st["ticket_id"].map(created), pd.Series(snap, index=st.index)))
        st["day"] = d
        rows.append(st.groupby(["day", "channel_tag", "age"], observed=True).agg(
            unsolved=("ticket_id", "size"), unassigned=("assignee", lambda a: (a == "").sum())))
    out["backlog"] = pd.concat(rows) if rows else pd.DataFrame()
    now_open = social[social["status"].isin(UNSOLVED)]
    out["backlog_now"] = now_open.groupby(["channel_tag", _bucket(_hours(now_open["created_at"],
                                                                         pd.Series(now, index=now_open.index)))],
                                          observed=True).size()

    # Agents.
    ev_r = events[(events["created_at"] >= lo) & (events["created_at"] < hi) & events["ticket_id"].isin(ids["id"])]
    asg = ev_r[(ev_r["kind"] == "assignee_changed") & (ev_r["actor_type"] == "agent")]
    asg = asg[asg["data"].map(lambda s: str(json.loads(s).get("assignee_id"))) == asg["actor_id"]]
    claimed = asg.groupby(asg["actor_id"].astype("int64"))["ticket_id"].nunique()
    sv = ev_r[(ev_r["kind"] == "status_changed") & (ev_r["actor_type"] == "agent")]
    sv = sv[sv["data"].map(lambda s: json.loads(s).get("status")) == "solved"]
    solved = sv.groupby(sv["actor_id"].astype("int64"))["ticket_id"].nunique()
    ob = outbox[outbox["ticket_id"].isin(ids["id"])]
    ob_r = ob[(ob["created_at"] >= lo) & (ob["created_at"] < hi)]
    replies = ob_r.groupby("agent_id").agg(replies=("id", "size"), sent=("sent_at", "count"))
    firsts = ob.sort_values("created_at").drop_duplicates("ticket_id")
    firsts = firsts[(firsts["created_at"] >= lo) & (firsts["created_at"] < hi)]
    firsts = firsts.assign(h=_hours(firsts["ticket_id"].map(created), firsts["created_at"]))
    out["agents"] = pd.concat([claimed.rename("claimed"), solved.rename("solved"), replies,
                               firsts.groupby("agent_id")["h"].median()], axis=1)

    # Messaging windows and delivery.
    tag_of = social.drop_duplicates("id").set_index("id")["channel_tag"]
    mw = ob_r[ob_r["window_closed"] | ob_r["templ"]].copy()
    mw["channel"] = mw["ticket_id"].map(tag_of)
    mw["hour"] = mw["created_at"].dt.hour
    mw["refused"] = mw["window_closed"] & (mw["attempts"] == 0)
    mw["failed"] = mw["window_closed"] & (mw["attempts"] > 0)
    out["messaging_windows"] = mw.groupby(["channel", "agent_id", "hour"])[["refused", "failed", "templ"]].sum()
    retries = events[events["kind"] == "reply_retry"]
    retries = retries["data"].map(lambda s: json.loads(s).get("outbox_id")).value_counts()
    dl = ob_r.assign(channel=ob_r["ticket_id"].map(tag_of), retries=ob_r["id"].map(retries).fillna(0))
    out["delivery"] = dl.groupby("channel").agg(replies=("id", "size"), sent=("sent_at", "count"),
                                                delivered=("delivered_at", "count"), read=("read_at", "count"),
                                                failed=("state", lambda s: (s == "failed").sum()),
                                                retries=("retries", "sum"))

    # End users.
    uc = events[events["kind"] == "user_created"]
    uc_data = uc["data"].map(json.loads)
    origin = pd.DataFrame({"user_id": uc["user_id"], "created_at": uc["created_at"],
                           "channel": uc_data.map(lambda d: TAGS.get(d.get("channel"))),
                           "account": uc_data.map(lambda d: d.get("account"))})
    o_r = origin[(origin["created_at"] >= lo) & (origin["created_at"] < hi)]
    out["new_end_users"] = o_r.groupby([o_r["created_at"].dt.floor("D"), "channel", "account"]).size()
    mg = events[events["kind"].isin(["user_merged", "user_unmerged"]) & (events["created_at"] >= lo)
                & (events["created_at"] < hi)]
    mg = mg.merge(origin[["user_id", "channel"]], on="user_id")
    out["merges"] = mg.groupby([mg["created_at"].dt.floor("D"), "channel"]).size()
    active = users[(users["role"] == "end-user") & users["merged_into"].isna() & users["phone"].notna()]
    counts = active.groupby("phone")["id"].nunique()
    wanted = set(active[active["id"].isin(o_r["user_id"])]["phone"])
    counts = counts[counts > 1]
    out["duplicate_phones"] = counts[counts.index.isin(wanted)]

    # Tag hygiene.
    th = t[(t["created_at"] >= lo) & (t["created_at"] < hi)].copy()
    th["tag"] = th["channel"].map(TAGS)
    bad = th[[(tag not in tags) or ("messaging_support" not in tags) for tag, tags in zip(th["tag"], th["tags"],
                                                                                          strict=True)]]
    out["tag_hygiene"] = bad
    return {k: len(v) for k, v in out.items()}


# -- orchestration ---------------------------------------------------------------------------------

def child(impl: str, db: str, start: str, end: str) -> None:
    t0 = time.perf_counter()
    rows = (run_duckdb if impl == "duckdb" else run_pandas)(db, date.fromisoformat(start), date.fromisoformat(end))
    print(json.dumps({"impl": impl, "seconds": time.perf_counter() - t0, "peak_rss_mib": peak_rss_mib(),
                      "rows": rows}))


def measure(impl: str, db: Path, start: date, end: date) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", impl, "--db", str(db), "--from", start.isoformat(),
                           "--to", end.isoformat()], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=2_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--db", default=None, help="store file (generated when missing)")
    ap.add_argument("--days", type=int, default=30, help="report range: the last N days")
    ap.add_argument("--child", choices=["duckdb", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--duckdb-only", action="store_true",
                    help="skip the pandas-only baseline (it needs about 15 GiB a million tickets)")
    ap.add_argument("--from", dest="start")
    ap.add_argument("--to", dest="end")
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.db, args.start, args.end)
        return 0
    db = Path(args.db or f"data/bench-{args.tickets}.duckdb")
    generation = None
    if not db.exists():
        from warehouse.demo_data import generate_store

        t0 = time.perf_counter()
        counts = generate_store(db, args.tickets, args.seed)
        generation = {"seconds": time.perf_counter() - t0, **counts}
        print(f"generated {counts} in {generation['seconds']:.1f} s")
    end = date.today()
    start = end - timedelta(days=args.days - 1)
    results = [measure("duckdb", db, start, end)]
    if not args.duckdb_only:
        results.append(measure("pandas", db, start, end))
    speedup = results[1]["seconds"] / results[0]["seconds"] if len(results) > 1 else None
    print(f"\nreport suite over {start}..{end} on {db} ({args.tickets:,} tickets)")
    print(f"{'implementation':<16}{'seconds':>10}{'peak MiB':>12}")
    for r in results:
        print(f"{r['impl']:<16}{r['seconds']:>10.2f}{r['peak_rss_mib']:>12.0f}")
    if speedup is not None:
        print(f"DuckDB is {speedup:.1f}x faster than pandas-only (target >= 10x)")
    print(f"DuckDB peak {results[0]['peak_rss_mib']:.0f} MiB (target < 1024)")
    out_dir = HERE / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    (out_dir / f"reports-{args.tickets}-{stamp}.json").write_text(json.dumps({
        "tickets": args.tickets, "range": [start.isoformat(), end.isoformat()], "generation": generation,
        "results": results, "speedup": speedup, "machine": platform.platform()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
