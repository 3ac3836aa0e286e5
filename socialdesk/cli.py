"""`socialdesk`: the service, and ops and scripting commands over the same store.

Every command exits non-zero with a one-line error on bad input and prints JSON with `--json`.
While the service holds the store, commands run inside it, through its admin socket.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors import registry as channel_registry
from connectors.base import ConfigError
from socialdesk import config as config_module
from socialdesk import logs
from socialdesk.operations import OPERATIONS, file_argument, parse_jsonl
from warehouse import owner
from warehouse.conditions import ConditionError
from warehouse.store import StoreBusy
from warehouse.tickets import OperationError


class CommandError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    # The common options are accepted before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="configuration file (default: $SOCIALDESK_CONFIG or socialdesk.toml)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="socialdesk", description=__doc__.splitlines()[0], parents=[common])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return add(name, parents=[common], **kw)
    sub.add_parser = add_parser  # type: ignore[method-assign]

    def command(name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description or summary[0].upper() + summary[1:] + ".")

    command("serve", "run the service (webhooks, Slack app, outbox, rules clock)",
            "Run the service on PORT (default 3000) until SIGTERM or Ctrl-C: the channels' webhooks, the Slack "
            "app at /slack/events, /healthz, /metrics, the outbox sender and the rules clock. It owns the store; "
            "other commands reach it through its admin socket while it runs.")
    s = command("demo", "the service with fake channels and demo traffic (no accounts needed)",
                "Start local fakes of every channel's API and of Slack, run the real service on data/demo.duckdb and "
                "drive signed webhooks, replies and Slack requests through it; then serve until Ctrl-C.")
    s.add_argument("--once", action="store_true", help="drive the demo, print the notifier and exit")
    s = command("ingest", "ingest normalized messages from a JSON-lines file",
                "Store each line of FILE (a normalized message, see the README) through the one ingestion path. "
                "Lines that cannot be read are reported on stderr by number and skipped; the exit status is then 2.")
    s.add_argument("file", metavar="FILE", help="one JSON object a line")
    s = command("notifier", "the notifier as an agent sees it (R10-R16)")
    s.add_argument("--agent", required=True, metavar="SLACK_USER_ID", help="the agent's Slack user id")
    s.add_argument("--tab", choices=["assigned", "unassigned"], default="assigned", help="default: assigned")
    s.add_argument("--page", type=int, default=1, help="20 tickets a page (default 1)")
    s = command("view", "one page of a view (R16, R18, R19)")
    s.add_argument("name", metavar="VIEW", help="the view's title, e.g. \"Unassigned social messaging tickets\"")
    s.add_argument("--agent", metavar="SLACK_USER_ID", help="whose view it is (for views about the current user)")
    s.add_argument("--page", type=int, default=1, help="default 1")
    s = command("search", "end users by phone or social info, tickets by channel info (R25-R27)")
    s.add_argument("query", metavar="QUERY", help="a phone number in any format, a name, a username or an id")
    s = command("ticket", "one ticket with its comments and events")
    s.add_argument("id", type=int, metavar="TICKET_ID")
    s = command("user", "one user with identities and tickets")
    s.add_argument("id", type=int, metavar="USER_ID")
    s = command("claim", "assign a ticket to an agent")
    s.add_argument("ticket", type=int, metavar="TICKET_ID")
    s.add_argument("--agent", required=True, metavar="SLACK_USER_ID")
    s = command("status", "set a ticket's status")
    s.add_argument("ticket", type=int, metavar="TICKET_ID")
    s.add_argument("status", choices=["new", "open", "pending", "hold", "solved", "closed"])
    s = command("tag", "add or remove a ticket tag")
    s.add_argument("ticket", type=int, metavar="TICKET_ID")
    s.add_argument("action", choices=["add", "remove"])
    s.add_argument("tag", metavar="TAG")
    s = command("field", "set a ticket's priority, group, subject or custom fields",
                "Set the fields given, through the same operation as rules and Slack (triggers run after it); an "
                "unchanged value records nothing. An empty --priority or --group clears it.")
    s.add_argument("ticket", type=int, metavar="TICKET_ID")
    s.add_argument("--priority", metavar="PRIORITY", help="low, normal, high or urgent (\"\" clears it)")
    s.add_argument("--group", metavar="GROUP_ID", help="the group's id or name (\"\" clears it)")
    s.add_argument("--subject", metavar="TEXT")
    s.add_argument("--custom", action="append", default=[], metavar="KEY=VALUE",
                   help="a custom field, set as text; repeat for several")
    s = command("reply", "reply on the ticket's channel, from its business account (R20)",
                "Queue a public reply; the running service sends it through the channel's API from the ticket's "
                "business account. Outside the channel's messaging window it fails at once with the reason.")
    s.add_argument("ticket", type=int, metavar="TICKET_ID")
    s.add_argument("--agent", required=True, metavar="SLACK_USER_ID")
    s.add_argument("--text", default="", help="the message")
    s.add_argument("--status", choices=["new", "open", "pending", "hold", "solved"], help="submit the ticket as")
    s.add_argument("--file", metavar="PATH", help="a file to send with it")
    s = command("merge", "merge an end user into another (R5)",
                "Merge end user SOURCE into INTO_TARGET: SOURCE's identities, tickets and comments move to "
                "INTO_TARGET, and SOURCE stays as a tombstone pointing at it (unmerge undoes it).")
    s.add_argument("source", type=int, metavar="SOURCE", help="the user merged away")
    s.add_argument("target", type=int, metavar="INTO_TARGET", help="the user that remains")
    s = command("unmerge", "undo a merge", "Give the merged user SOURCE back their identities and tickets.")
    s.add_argument("source", type=int, metavar="SOURCE")
    s = command("dead-letters", "deliveries whose processing failed: list them, or retry them after a fix",
                "Webhooks are acknowledged once logged; a delivery the desk then could not turn into a ticket is "
                "kept in dead letters with the error and its input, and everything else carries on. Without "
                "arguments: list the unresolved ones (--all: every one). retry [ID]: process one (or every "
                "unresolved one) again, e.g. after upgrading; one that fails again stays, with its new error.")
    s.add_argument("action", nargs="?", choices=["list", "retry"], default="list", help="default: list")
    s.add_argument("id", nargs="?", type=int, metavar="ID", help="retry: the dead letter's id (default: all)")
    s.add_argument("--all", action="store_true", help="list: resolved ones too")
    s = command("report", "run the managers' notebooks into self-contained HTML (R28)",
                "Execute every notebook of notebooks/ on the store (live over the running service, else the file "
                "read-only) and write one HTML page each.")
    s.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="first day (default: 30 days ago)")
    s.add_argument("--to", dest="end", metavar="YYYY-MM-DD", help="last day (default: today)")
    s.add_argument("--out", default="reports", metavar="DIR", help="folder for the HTML pages (default: reports)")
    s = command("demo-data", "fill a store with a realistic generated history (for the notebooks)",
                "Generate tickets, comments, events and users over 30 days into the store "
                                   "(SOCIALDESK_DB), set-based: a million tickets take about a minute. Refuses a "
                                   "store that holds real data unless --into-existing.")
    s.add_argument("--tickets", type=int, required=True, help="how many tickets to generate")
    s.add_argument("--seed", type=int, default=1, help="the same seed gives the same history (default 1)")
    s.add_argument("--into-existing", action="store_true",
                   help="add to a store that already holds real tickets or webhooks")
    s = command("rules", "triggers, automations, macros and views: list, show, check, test (R24)",
                "list: every rule loaded; show RULE: one, by title or id; check [FILE]: load and check the rules "
                "directory (or one file), naming the file, rule and field of each problem; test TICKET_ID: which "
                "rules would act on the ticket now.")
    s.add_argument("action", choices=["list", "show", "check", "test"])
    s.add_argument("target", nargs="?", metavar="RULE|FILE|TICKET_ID",
                   help="show: a rule's title or id; check: a file; test: a ticket id")
    return p


def _demo_data(cfg: config_module.Config, tickets: int, seed: int, into_existing: bool) -> dict[str, Any]:
    """Set-based generation straight into the store (the service must not be running)."""
    from warehouse.demo_data import generate_store, real_data
    from warehouse.store import open_connection
    if tickets <= 0:
        raise CommandError("--tickets must be positive")
    if owner.is_running(cfg.store.path):
        raise CommandError(f"the service is running on {cfg.store.path}; demo data goes into a store of its own "
                           "(SOCIALDESK_DB=data/demo-data.duckdb socialdesk demo-data ...)")
    if Path(cfg.store.path).exists() and not into_existing:
        con = open_connection(cfg.store.path, read_only=True)
        try:
            why = real_data(con)
        finally:
            con.close()
        if why:
            raise CommandError(f"{cfg.store.path} is not a demo store ({why}); generated tickets would mix with "
                               "real ones. Use another SOCIALDESK_DB, or --into-existing if you mean it")
    return generate_store(cfg.store.path, tickets, seed)


def _rules(cfg: config_module.Config, action: str, target: str | None) -> dict[str, Any]:
    """Rule files are read and checked without the store; `test` asks the store about one ticket."""
    from warehouse import rules
    if action == "check":
        report = rules.check_file(target) if target else rules.check_directory(cfg.rules_dir, cfg.assignment)
        if not report.get("ok", True):
            problems = [str(p) for p in report.get("problems") or []]
            for problem in problems[1:]:
                print(problem, file=sys.stderr)
            raise CommandError(problems[0] if len(problems) == 1 else
                               f"{problems[0]} (and {len(problems) - 1} more problems above)")
        return report
    if action == "test":
        if not target or not target.isdigit():
            raise CommandError("rules test takes a ticket id")
        return run_operation(cfg, "rules_test", {"ticket": int(target)})
    loaded = rules.load_rules(cfg.rules_dir, cfg.assignment)
    if action == "show":
        if not target:
            raise CommandError("rules show takes a rule's title or id")
        return rules.show(loaded, target)
    return rules.describe(loaded)


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    c = args.command
    if c == "notifier":
        return {"agent": args.agent, "tab": args.tab, "page": args.page}
    if c == "view":
        return {"name": args.name, "agent": args.agent, "page": args.page}
    if c == "search":
        return {"query": args.query}
    if c in ("ticket", "user"):
        return {"id": args.id}
    if c == "claim":
        return {"ticket": args.ticket, "agent": args.agent}
    if c == "status":
        return {"ticket": args.ticket, "status": args.status}
    if c == "tag":
        return {"ticket": args.ticket, "action": args.action, "tag": args.tag}
    if c == "field":
        return {"ticket": args.ticket, "changes": _field_changes(args)}
    if c == "reply":
        return {"ticket": args.ticket, "agent": args.agent, "text": args.text, "status": args.status,
                "file": file_argument(args.file) if args.file else None}
    if c == "merge":
        return {"source": args.source, "target": args.target}
    if c == "unmerge":
        return {"source": args.source}
    raise CommandError(f"unknown command {c}")


def _field_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The options given, as `set_fields` takes them (it checks the values)."""
    changes: dict[str, Any] = {name: value for name, value in (
        ("priority", args.priority), ("group_id", args.group), ("subject", args.subject)) if value is not None}
    custom = {}
    for item in args.custom:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--custom takes KEY=VALUE, not {item!r}")
        custom[key.strip()] = value
    if custom:
        changes["custom_fields"] = custom
    if not changes:
        raise CommandError("field takes at least one of --priority, --group, --subject, --custom")
    return changes


def _dead_letters(cfg: config_module.Config, action: str, letter: int | None, resolved: bool) -> dict[str, Any]:
    if action == "retry":
        return run_operation(cfg, "dead_letters_retry", {"id": letter})
    if letter is not None:
        raise CommandError("dead-letters takes an ID only with retry")
    return run_operation(cfg, "dead_letters", {"resolved": resolved})


def run_operation(cfg: config_module.Config, op: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run an operation on the store, or inside the running service when it holds the store."""
    from socialdesk.service import admin_call, open_desk
    if owner.is_running(cfg.store.path):
        return admin_call(cfg.store.path, op, kwargs)
    desk = open_desk(cfg)
    try:
        async def run() -> dict[str, Any]:
            return dict(await OPERATIONS[op](desk, **kwargs))
        return asyncio.run(run())
    finally:
        desk.store.close()


def _ingest(cfg: config_module.Config, path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"no such file: {path}")
    messages, errors = parse_jsonl(file.read_text().splitlines())
    for error in errors:
        print(f"skipped {error}", file=sys.stderr)
    totals: dict[str, Any] = {"stored": 0, "duplicates": 0, "dead_letters": 0, "created_tickets": [],
                              "updated_tickets": [], "skipped": len(errors), "errors": errors}
    for start in range(0, len(messages), 1000):
        result = run_operation(cfg, "ingest", {"messages": messages[start:start + 1000]})
        for key in ("stored", "duplicates", "dead_letters"):
            totals[key] += result.get(key, 0)
        totals["created_tickets"] += result["created_tickets"]
        totals["updated_tickets"] += [t for t in result["updated_tickets"] if t not in totals["updated_tickets"]]
    if totals["dead_letters"]:
        print(f"{totals['dead_letters']} message(s) could not be turned into tickets and were kept as dead letters "
              "(socialdesk dead-letters)", file=sys.stderr)
    return totals


def _rows(tickets: list[dict[str, Any]]) -> list[str]:
    return [f"  #{t['id']:<6} [{t['status']}] {t['requester']['name']}  ({t['conversation_status']})"
            f"  {_abbreviation(t['channel'])}" for t in tickets]


def _abbreviation(channel: str) -> str:
    found = channel_registry.DESCRIPTIONS.get(channel)
    return found.channel.abbreviation if found else channel


def render(command: str, result: Mapping[str, Any]) -> str:
    """A person's reading of a result; --json prints it whole."""
    if command == "notifier":
        head = f"{'Assigned to you' if result['tab'] == 'assigned' else 'Unassigned'}" + (
            "  (red dot: new unassigned tickets wait)" if result["red_dot"] else "")
        lines = [head, *(_rows(result["tickets"]) or ["  (no tickets)"])]
        if result["has_more"]:
            lines.append("  [Load more tickets]")
        return "\n".join(lines)
    if command == "view":
        lines = [f"{result['view']} (page {result['page']})", *(_rows(result["tickets"]) or ["  (no tickets)"])]
        return "\n".join(lines + (["  (more on the next page)"] if result["has_more"] else []))
    if command == "dead-letters" and "dead_letters" in result:
        letters = result["dead_letters"]
        lines = [f"{len(letters)} dead letter(s); {result['log']['waiting']} webhook(s) waiting to become tickets"]
        for d in letters:
            what = d["item"] or {}
            lines.append(f"  #{d['id']:<5} {d['failed_at']}  {d['channel']} {d['kind'] or 'entry'} "
                         f"{what.get('message_id', '')}  (inbox {d['inbox_id']}, attempts {d['attempts']}"
                         f"{', resolved' if d['resolved_at'] else ''})")
            lines.append(f"         {d['error']}")
        return "\n".join(lines)
    if command == "dead-letters":
        lines = [f"{result['resolved']} resolved, {result['still_dead']} still dead"]
        lines += [f"  #{r['id']}: " + ("resolved" if r["resolved"] else r["error"]) for r in result["retried"]]
        return "\n".join(lines)
    if command == "search":
        lines = [f"users ({len(result['users'])}):"]
        lines += [f"  {u['id']}: {u['name']} {u['phone'] or ''}  tickets {u['ticket_ids']}" for u in result["users"]]
        lines += [f"tickets ({len(result['tickets'])}):", *_rows(result["tickets"])]
        return "\n".join(lines)
    return json.dumps(result, indent=2, ensure_ascii=False, default=str)


def main(argv: list[str] | None = None) -> int:
    # The store, its WAL and the service's sockets hold every customer's messages: its user's alone.
    os.umask(0o077)
    args = _parser().parse_args(argv)
    for name, default in (("config", None), ("json", False), ("verbose", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    quiet = args.command not in ("serve", "demo")
    logs.configure(verbose=args.verbose, quiet=quiet)
    try:
        # Only the service calls channels and Slack: other commands need none of their secrets.
        cfg = config_module.load(args.config, secrets=args.command in ("serve", "demo"))
        logs.configure(cfg.server.json_logs, args.verbose, quiet)
        if args.command == "serve":
            from socialdesk.service import serve
            serve(cfg)
            return 0
        if args.command == "demo":
            from socialdesk import demo
            return demo.main(cfg, once=args.once)
        if args.command == "ingest":
            result = _ingest(cfg, args.file)
        elif args.command == "report":
            from socialdesk.reporting import run_report
            pages = run_report(args.start, args.end, args.out, db_path=cfg.store.path, config_path=args.config)
            result = {"pages": [str(p) for p in pages]}
        elif args.command == "demo-data":
            result = _demo_data(cfg, args.tickets, args.seed, args.into_existing)
        elif args.command == "rules":
            result = _rules(cfg, args.action, args.target)
        elif args.command == "dead-letters":
            result = _dead_letters(cfg, args.action, args.id, args.all)
        else:
            result = run_operation(cfg, args.command, _kwargs(args))
    except (CommandError, ConfigError, OperationError, ConditionError, StoreBusy, ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False, default=str) if args.json else render(args.command, result))
    # Lines were skipped or dead-lettered: the good ones are in, but a script must not take that for
    # complete success. A retry that left dead letters is not one either.
    if args.command == "ingest" and (result.get("skipped") or result.get("dead_letters")):
        return 2
    return 2 if args.command == "dead-letters" and result.get("still_dead") else 0


if __name__ == "__main__":
    sys.exit(main())
