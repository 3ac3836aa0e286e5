"""Every report on a small hand-built store with known answers (R28, R9, R22, B1, B2, B4, B5).

The store is built through the real operations (ingestion, claim, reply, solve, tags, merges) on a
frozen clock, so the events the reports read are the ones the service writes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ingest, msg
from warehouse import clock, reports
from warehouse.model import StatusUpdate
from warehouse.outbox import Outcome, record
from warehouse.store import Store
from warehouse.tickets import Actor, change_tags, claim, ensure_agent, merge_users, reply, set_status, unmerge_user

DAY = date(2026, 11, 24)
T9 = datetime(2026, 11, 24, 9, 0)


@pytest.fixture
def desk_store(store: Store) -> Any:
    """Tickets: A (PN1, replied after 1 h, solved after 3 h), B (PN2, untouched), C (PN1, social tag removed),
    D (PN2, same phone as A's requester: a second account, R4); one reply refused after the window closed."""
    now = [datetime(2026, 11, 24, 10, 0)]
    clock.set_clock(lambda: now[0])
    try:
        a = ingest(store, msg(user="33600000001", at=T9)).created_tickets[0]
        b = ingest(store, msg(account="PN2", user="33600000002", at=T9)).created_tickets[0]
        c = ingest(store, msg(user="33600000003", at=T9)).created_tickets[0]
        d = ingest(store, msg(account="PN2", user="33600000001", at=T9)).created_tickets[0]
        agent = store.write(lambda con: ensure_agent(con, "U1", "Alice"))
        store.write(lambda con: claim(con, a, agent))
        r = store.write(lambda con: reply(con, a, agent, "Hello!"))
        store.write(lambda con: record(con, [Outcome(r["outbox_id"], a, "retry", reason="503", retry_in=1)]))
        store.write(lambda con: record(con, [Outcome(r["outbox_id"], a, "sent", platform_message_id="wamid.1")]))
        store.write(lambda con: change_tags(con, c, [], ["messaging_support"], Actor.agent(agent)))
        now[0] = datetime(2026, 11, 24, 12, 0)
        store.write(lambda con: set_status(con, a, "solved", Actor.agent(agent)))
        now[0] = datetime(2026, 11, 25, 11, 0)  # 26 h after D's message: WhatsApp's window closed (R22)
        store.write(lambda con: reply(con, d, agent, "Sorry for the wait"))
        yield {"store": store, "a": a, "b": b, "c": c, "d": d, "agent": agent, "now": now}
    finally:
        clock.set_clock(None)


def run(ctx: dict[str, Any], fn: Any, *args: Any, **kw: Any) -> Any:
    return ctx["store"].read(lambda con: fn(con, *args, **kw))


def test_volume_counts_social_tickets_by_channel_tag_and_account_and_drops_removed_tags(desk_store: Any) -> None:
    """R28, R9: C lost `messaging_support`, so it is no longer a social ticket."""
    df = run(desk_store, reports.volume, DAY, DAY)
    got = {(r.channel, r.account): r.tickets for r in df.itertuples()}
    assert got == {("whatsapp", "Paris support"): 1, ("whatsapp", "Lyon support"): 2}
    assert list(df["period_start"].astype(str).unique()) == ["2026-11-24"]


def test_volume_per_week_starts_on_monday(desk_store: Any) -> None:
    df = run(desk_store, reports.volume, DAY, DAY, period="week")
    assert set(df["period_start"].astype(str)) == {"2026-11-23"} and df["tickets"].sum() == 3


def test_volume_filters_by_account_name_or_id(desk_store: Any) -> None:
    assert run(desk_store, reports.volume, DAY, DAY, accounts=["Lyon support"])["tickets"].sum() == 2
    assert run(desk_store, reports.volume, DAY, DAY, accounts="PN1")["tickets"].sum() == 1
    assert run(desk_store, reports.volume, DAY, DAY, channels=["messenger"]).empty


def test_a_ticket_whose_channel_tag_was_removed_leaves_its_channel_group(desk_store: Any) -> None:
    """R9: grouped by the channel tag present, not by how the ticket came in."""
    ctx = desk_store
    ctx["store"].write(lambda con: change_tags(con, ctx["b"], [], ["whatsapp"], Actor.agent(ctx["agent"])))
    df = run(ctx, reports.volume, DAY, DAY)
    assert dict(df.groupby("channel")["tickets"].sum()) == {"untagged": 1, "whatsapp": 2}
    assert run(ctx, reports.volume, DAY, DAY, channels=["whatsapp"])["tickets"].sum() == 2


def test_responsiveness_gives_first_reply_and_resolution_in_calendar_hours(desk_store: Any) -> None:
    df = run(desk_store, reports.responsiveness, DAY, DAY)
    row = df.set_index("channel").loc["whatsapp"]
    # First replies: A after 1 h; D's only reply was refused by the closed window, so it has none (R22).
    assert row["tickets"] == 3 and row["replied"] == 1 and row["solved"] == 1
    assert row["first_reply_median_h"] == pytest.approx(1.0) and row["first_reply_p90_h"] == pytest.approx(1.0)
    assert row["resolution_median_h"] == pytest.approx(3.0) and row["resolution_p90_h"] == pytest.approx(3.0)


def test_backlog_now_counts_unsolved_and_unassigned_by_age(desk_store: Any) -> None:
    df = run(desk_store, reports.backlog_now, at=datetime(2026, 11, 25, 11, 0))
    # B unassigned (26 h old); D assigned by the refused reply (R22 still assigns the replier).
    assert df["unsolved"].sum() == 2 and df["unassigned"].sum() == 1
    assert set(df["age"].astype(str)) == {"1-3 d"}


def test_backlog_day_by_day_is_rebuilt_from_events(desk_store: Any) -> None:
    df = run(desk_store, reports.backlog, DAY - timedelta(days=1), DAY + timedelta(days=1))
    per_day = df.groupby("day")[["unsolved", "unassigned"]].sum()
    # End of 24 Nov: B and D unsolved and unassigned (A solved at 12:00); 25 Nov 11:00 (now): D assigned.
    per_day.index = per_day.index.date
    assert per_day.loc[DAY].tolist() == [2, 2]
    assert per_day.loc[DAY + timedelta(days=1)].tolist() == [2, 1]
    assert DAY - timedelta(days=1) not in per_day.index


def test_agents_counts_claims_replies_solves_and_median_first_reply(desk_store: Any) -> None:
    df = run(desk_store, reports.agents, DAY, DAY + timedelta(days=1))
    row = df.set_index("agent").loc["Alice"]
    # Claimed: A by claim, D by replying to it unassigned (the replier takes the ticket).
    assert (row["claimed"], row["replies"], row["replies_sent"], row["solved"]) == (2, 2, 1, 1)
    # A: first reply 1 h after; D: 26 h after.
    assert row["first_reply_median_h"] == pytest.approx(1.0)


def test_messaging_windows_counts_refused_replies_by_channel_agent_and_hour(desk_store: Any) -> None:
    """R22, B1."""
    df = run(desk_store, reports.messaging_windows, DAY, DAY + timedelta(days=1))
    assert df[["channel", "agent", "hour", "refused", "failed", "templates"]].values.tolist() == [
        ["whatsapp", "Alice", 11, 1, 0, 0]]


def test_messaging_windows_counts_templates_sent_instead(desk_store: Any) -> None:
    ctx = desk_store
    ctx["store"].write(lambda con: reply(con, ctx["d"], ctx["agent"], "", template={"name": "follow_up"}))
    df = run(ctx, reports.messaging_windows, DAY, DAY + timedelta(days=1))
    assert df["templates"].sum() == 1 and df["refused"].sum() == 1


def test_whatsapp_costs_by_channel_account_and_tag_from_the_pricing_in_statuses(desk_store: Any) -> None:
    """Issue 12 (B1): WhatsApp's per-message pricing, reported beside the windows. Ticket C lost its
    social tag (R9): its reply, however billed, is no longer a social ticket's."""
    ctx = desk_store
    store = ctx["store"]
    pricing = {"wamid.1": {"billable": False, "pricing_model": "PMP", "category": "service"},
               "wamid.2": {"billable": True, "pricing_model": "PMP", "category": "utility"},
               "wamid.3": {"billable": True, "pricing_model": "PMP", "category": "marketing"}}
    for ticket, wamid in ((ctx["b"], "wamid.2"), (ctx["c"], "wamid.3"), (ctx["b"], "wamid.4")):
        sent = store.write(lambda con, t=ticket: reply(con, t, ctx["agent"], "", template={"name": "follow_up"}))
        store.write(lambda con, s=sent, w=wamid: record(con, [Outcome(s["outbox_id"], s["ticket_id"], "sent", w)]))
    store.write(lambda con: change_tags(con, ctx["b"], ["returns"], [], Actor.agent(ctx["agent"])))
    for wamid, price in pricing.items():
        ingest(store, StatusUpdate("whatsapp", "PN1" if wamid == "wamid.1" else "PN2", "33600000001", "delivered",
                                   datetime(2026, 11, 25, 11, 30, tzinfo=UTC), message_id=wamid, pricing=price))
    df = run(ctx, reports.reply_costs, DAY, DAY + timedelta(days=1), rates={"utility": 0.04, "marketing": 0.1})
    got = df[["account", "category", "messages", "billable", "free", "cost"]].fillna(-1).values.tolist()
    assert got == [["Lyon support", "unknown", 1, 0, 0, 0.0], ["Lyon support", "utility", 1, 1, 0, 0.04],
                   ["Paris support", "service", 1, 0, 1, 0.0]]
    by_tag = run(ctx, reports.reply_costs_by_tag, DAY, DAY + timedelta(days=1))
    assert by_tag[["tag", "category", "messages", "billable"]].values.tolist() == [
        ["(no tag)", "service", 1, 0], ["returns", "unknown", 1, 0], ["returns", "utility", 1, 1]]
    assert by_tag["cost"].isna().all()  # no rates given: no cost made up
    assert run(ctx, reports.reply_costs, DAY, DAY + timedelta(days=1), accounts=["Paris support"])[
        "messages"].tolist() == [1]


def test_delivery_reports_states_and_outbox_retries(desk_store: Any) -> None:
    """B2, B4."""
    df = run(desk_store, reports.delivery, DAY, DAY + timedelta(days=1)).set_index("channel")
    row = df.loc["whatsapp"]
    assert (row["replies"], row["sent"], row["delivered"], row["failed"], row["failed_window_closed"]) == (
        2, 1, 0, 1, 1)
    assert (row["retries"], row["replies_retried"], row["max_attempts"]) == (1, 1, 2)


def test_end_users_new_accounts_merges_and_shared_phones(desk_store: Any) -> None:
    """R4, R5, B5: the same phone on two WhatsApp numbers is two accounts, suspected duplicates until merged."""
    ctx = desk_store
    assert run(ctx, reports.new_end_users, DAY, DAY)["new_accounts"].sum() == 4
    dups = run(ctx, reports.duplicate_phones)
    assert dups["phone"].tolist() == ["+33600000001"] and dups["accounts"].tolist() == [2]
    a_user, d_user = ctx["store"].read(lambda con: [r[0] for r in con.execute(
        "SELECT requester_id FROM tickets WHERE id IN (?, ?) ORDER BY id", [ctx["a"], ctx["d"]]).fetchall()])
    ctx["store"].write(lambda con: merge_users(con, d_user, a_user, Actor.agent(ctx["agent"])))
    assert run(ctx, reports.duplicate_phones).empty
    ctx["store"].write(lambda con: unmerge_user(con, d_user, Actor.agent(ctx["agent"])))
    m = run(ctx, reports.merges, DAY, DAY + timedelta(days=1))
    assert (m["merged"].sum(), m["unmerged"].sum()) == (1, 1)
    summary = run(ctx, reports.end_users, DAY, DAY + timedelta(days=1)).set_index("channel")
    assert summary.loc["whatsapp"].tolist() == [4, 1, 1, 2]


def test_tag_hygiene_lists_social_tickets_missing_their_tags(desk_store: Any) -> None:
    """R9."""
    df = run(desk_store, reports.tag_hygiene, DAY, DAY)
    assert df["ticket_id"].tolist() == [desk_store["c"]]
    row = df.iloc[0]
    assert list(row["missing"]) == ["messaging_support"] and row["channel"] == "whatsapp"
    assert row["removed_by"] == f"agent {desk_store['agent']}"


def test_all_reports_run_on_an_empty_range(desk_store: Any) -> None:
    out = run(desk_store, reports.all_reports, "2020-01-01", "2020-01-31")
    assert all(df.empty for name, df in out.items() if name not in ("backlog_now", "duplicate_phones", "end_users"))


def test_channel_filters_accept_names_and_tags_and_refuse_unknown_ones() -> None:
    assert reports.channel_tags(["messenger", "x", "line"]) == ["facebook", "twitter", "line"]
    assert reports.channel_tags("whatsapp,facebook") == ["whatsapp", "facebook"]
    with pytest.raises(ValueError, match="unknown channel"):
        reports.channel_tags(["carrier_pigeon"])


def test_a_date_end_is_included_whole_and_a_datetime_end_is_excluded() -> None:
    assert reports.date_range("2026-11-01", "2026-11-01") == (datetime(2026, 11, 1), datetime(2026, 11, 2))
    assert reports.date_range(date(2026, 11, 1), datetime(2026, 11, 1, 12)) == (
        datetime(2026, 11, 1), datetime(2026, 11, 1, 12))
    with pytest.raises(ValueError):
        reports.date_range("2026-11-02", "2026-11-01")
