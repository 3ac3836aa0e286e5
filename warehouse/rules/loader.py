"""Rule files: the shipped defaults and the admins' `rules/*.json`, read, validated and merged.

A file holds Zendesk's own envelopes, as its API exports them: `{"trigger": {...}}`,
`{"triggers": [...]}` (pagination keys allowed), and the same for automations, macros and views.
Zendesk's metadata (id, url, position, timestamps, ...) is kept; anything we do not support is
reported with the file, the rule and the field, never silently dropped. An admin's rule with the
title of a shipped one replaces it in place (that is how a shipped rule is changed or turned off).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from warehouse import clock
from warehouse.conditions import ConditionError, Context, compile_condition, compile_conditions
from warehouse.rules.actions import ROUND_ROBIN, has_time_condition, makes_false, once_only, validate_action
from warehouse.tickets import Actor

KINDS = {"trigger": "triggers", "automation": "automations", "macro": "macros", "view": "views"}
SHIPPED_FILES = ("views.json", "triggers.json", "automations.json", "macros.json")
PAGINATION = ("next_page", "previous_page", "count", "meta", "links")
# What Zendesk's API puts beside conditions and actions: kept, not interpreted.
METADATA = ("url", "id", "title", "raw_title", "active", "updated_at", "created_at", "default", "position",
            "description", "category_id", "restriction", "usage_1h", "usage_24h", "usage_7d", "usage_30d",
            "app_installation", "permissions")
VIEW_KEYS = ("execution", "output", "shared", "watchable")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    kind: str | None
    rule: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = [self.file]
        if self.rule is not None:
            where.append(f"{self.kind} {self.rule!r}")
        if self.field:
            where.append(f"field {self.field}")
        return ": ".join([*where, self.message])


class RuleError(ValueError):
    """Rules that cannot load; each problem names the file, the rule and the field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str  # trigger, automation, macro, view
    title: str
    conditions: dict[str, Any]
    actions: list[dict[str, Any]]
    active: bool
    source: str  # the file it came from ("shipped:triggers.json" for ours)
    raw: dict[str, Any]  # as written, for `rules show`

    @property
    def id(self) -> str:
        return str(self.raw.get("id") or self.title)

    @property
    def description(self) -> str | None:
        return self.raw.get("description")

    @property
    def actor(self) -> Actor:
        return Actor("rule", f"{self.kind}:{self.title}")

    @property
    def uses_round_robin(self) -> bool:
        return any(a.get("field") == "assignee_id" and a.get("value") == ROUND_ROBIN for a in self.actions)

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "title": self.title, "active": self.active, "source": self.source,
                "description": self.description, "conditions": self.conditions, "actions": self.actions}


@dataclass(slots=True)
class RuleSet:
    triggers: list[Rule] = field(default_factory=list)
    automations: list[Rule] = field(default_factory=list)
    macros: list[Rule] = field(default_factory=list)
    views: list[Rule] = field(default_factory=list)
    assignment: dict[str, Any] = field(default_factory=dict)

    def of(self, kind: str) -> list[Rule]:
        return getattr(self, KINDS[kind])

    def all(self) -> list[Rule]:
        return [*self.triggers, *self.automations, *self.macros, *self.views]

    def find(self, key: str | int, kind: str | None = None) -> Rule:
        """A rule by title (any case) or by its Zendesk id."""
        wanted = str(key).strip().lower()
        for rule in (self.of(kind) if kind else self.all()):
            if rule.title.lower() == wanted or rule.id.lower() == wanted:
                return rule
        raise KeyError(f"no {kind or 'rule'} named {key!r}")

    def shared_views(self) -> list[dict[str, Any]]:
        """The shared views as `warehouse.views.sync_shared_views` takes them."""
        return [{**r.raw, "title": r.title, "conditions": r.conditions} for r in self.views if r.active]


# -- validation ----------------------------------------------------------------------------------

def _validate(kind: str, raw: Any, file: str) -> list[Problem]:
    if not isinstance(raw, Mapping):
        return [Problem(file, kind, None, None, f"a {kind} is a JSON object")]
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        return [Problem(file, kind, str(title) if title else "(untitled)", "title", "a rule needs a title")]

    def problem(fld: str | None, message: str) -> Problem:
        return Problem(file, kind, title, fld, message)

    found: list[Problem] = []
    allowed = {*METADATA, "actions", "conditions"} | (set(VIEW_KEYS) if kind == "view" else set())
    found += [problem(k, f"unsupported {kind} field") for k in raw if k not in allowed]
    if "active" in raw and not isinstance(raw["active"], bool):
        found.append(problem("active", "active is true or false"))
    conditions, actions = raw.get("conditions"), raw.get("actions")
    if kind == "macro":
        if conditions:
            found.append(problem("conditions", "macros have no conditions"))
    else:
        found += _validate_conditions(kind, conditions, problem)
    if kind == "view":
        if actions:
            found.append(problem("actions", "views have no actions"))
        return found
    if not isinstance(actions, list) or not actions:
        return [*found, problem("actions", "needs a list of at least one action")]
    for action in actions:
        found += [problem(f, m) for f, m in validate_action(action, kind)]
    if kind == "automation" and isinstance(conditions, Mapping) and not found:
        if not has_time_condition(conditions):
            found.append(problem("conditions", "an automation needs a time condition (hours_since_..., "
                                               "messaging_window_hours_left)"))
        elif not once_only(conditions) and not any(
                isinstance(c, Mapping) and makes_false(c, actions) for c in conditions.get("all") or []):
            found.append(problem("conditions", "no condition in 'all' is made false by the automation's own "
                                               "actions, so it would act on the same tickets every run (add one, "
                                               "e.g. a tag the actions add, as Zendesk requires)"))
    return found


def _validate_conditions(kind: str, conditions: Any, problem: Any) -> list[Problem]:
    if not isinstance(conditions, Mapping):
        return [problem("conditions", 'needs {"all": [...], "any": [...]}')]
    ctx = Context(now=clock.now(), current_user=1, update_type="Create", comment_is_public=True,
                  current_role="agent", trigger=kind == "trigger")
    try:
        compile_conditions({k: [] for k in conditions}, ctx)  # the keys and list shapes
    except ConditionError as exc:
        return [problem("conditions", str(exc).removeprefix("conditions: "))]
    found = []
    for key in ("all", "any"):
        for i, cond in enumerate(conditions.get(key) or []):
            try:
                compile_condition(cond, ctx, f"conditions.{key}[{i}]")
            except ConditionError as exc:
                name = cond.get("field") if isinstance(cond, Mapping) else None
                found.append(problem(str(name) if name else "conditions", str(exc)))
    if kind in ("trigger", "automation") and not found and not (conditions.get("all") or conditions.get("any")):
        found.append(problem("conditions", "needs at least one condition"))
    return found


# -- files ---------------------------------------------------------------------------------------

def parse(text: str, file: str) -> tuple[list[Rule], list[Problem]]:
    """The rules a file holds, and what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [Problem(file, None, None, None, f"not valid JSON: {exc}")]
    if not isinstance(data, Mapping):
        return [], [Problem(file, None, None, None, "expected a JSON object such as {\"trigger\": {...}}")]
    rules: list[Rule] = []
    problems: list[Problem] = []
    envelopes = {one: one for one in KINDS} | {many: one for one, many in KINDS.items()}
    for key, value in data.items():
        if key in PAGINATION:
            continue
        if key not in envelopes:
            problems.append(Problem(file, None, None, key, "unknown key (expected trigger(s), automation(s), "
                                                            "macro(s) or view(s))"))
            continue
        kind = envelopes[key]
        items = value if key == KINDS[kind] else [value]
        if not isinstance(items, list):
            problems.append(Problem(file, None, None, key, "expected a list"))
            continue
        # Zendesk lists come in position order; keep that order when positions are given.
        ordered = sorted(enumerate(items), key=lambda iv: (
            iv[1].get("position") if isinstance(iv[1], Mapping) and isinstance(iv[1].get("position"), int)
            else float("inf"), iv[0]))
        for _, raw in ordered:
            found = _validate(kind, raw, file)
            problems += found
            if not found:
                rules.append(Rule(kind, raw["title"].strip(), dict(raw.get("conditions") or {}),
                                  list(raw.get("actions") or []), raw.get("active", True), file, dict(raw)))
    seen: dict[tuple[str, str], Rule] = {}
    for r in rules:
        if (r.kind, r.title.lower()) in seen:
            problems.append(Problem(file, r.kind, r.title, "title", "two rules of this kind have this title"))
        seen[(r.kind, r.title.lower())] = r
    return rules, problems


def _shipped() -> list[tuple[str, str]]:
    folder = resources.files("warehouse.defaults")
    return [(f"shipped:{name}", folder.joinpath(name).read_text()) for name in SHIPPED_FILES
            if folder.joinpath(name).is_file()]


def _check_assignment(assignment: Mapping[str, Any]) -> list[Problem]:
    if not assignment.get("enabled"):
        return []
    found = []
    if not assignment.get("agents"):
        found.append(Problem("[assignment]", None, None, "agents", "round-robin assignment is enabled but lists "
                                                                    "no agents"))
    if assignment.get("by", "channel") not in ("channel", "account"):
        found.append(Problem("[assignment]", None, None, "by", "by is channel or account"))
    return found


def load_rules(directory: Path | str | None = None, assignment: Mapping[str, Any] | None = None) -> RuleSet:
    """The shipped rules, then every `*.json` in `directory` (by name); raises `RuleError` listing all problems.

    Triggers that assign round-robin are active only when `[assignment] enabled = true`.
    """
    assignment = dict(assignment or {})
    sources = _shipped()
    if directory is not None and Path(directory).is_dir():
        sources += [(str(p), p.read_text()) for p in sorted(Path(directory).glob("*.json"))]
    problems = _check_assignment(assignment)
    merged: dict[str, dict[str, Rule]] = {kind: {} for kind in KINDS}
    origin: dict[tuple[str, str], str] = {}
    for file, text in sources:
        rules, found = parse(text, file)
        problems += found
        for rule in rules:
            key = (rule.kind, rule.title.lower())
            if key in origin and not origin[key].startswith("shipped:") and not file.startswith("shipped:"):
                problems.append(Problem(file, rule.kind, rule.title, "title", f"also defined in {origin[key]}"))
                continue
            if rule.uses_round_robin and not assignment.get("enabled"):
                rule = Rule(rule.kind, rule.title, rule.conditions, rule.actions, False, rule.source, rule.raw)
            origin[key] = file
            merged[rule.kind][rule.title.lower()] = rule  # a later file replaces in place: dicts keep order
    if problems:
        raise RuleError(problems)
    return RuleSet(**{field: list(merged[kind].values()) for kind, field in KINDS.items()}, assignment=assignment)


def check_file(path: Path | str) -> dict[str, Any]:
    """`socialdesk rules check FILE`: what the file defines and every problem in it."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        return {"file": str(path), "ok": False, "rules": [], "problems": [f"{path}: {exc.strerror}"]}
    rules, problems = parse(text, str(path))
    return {"file": str(path), "ok": not problems, "rules": [{"kind": r.kind, "title": r.title} for r in rules],
            "problems": [str(p) for p in problems]}


def check_directory(directory: Path | str | None, assignment: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`socialdesk rules check` without a file: the whole set, as the service would load it."""
    try:
        rules = load_rules(directory, assignment)
    except RuleError as exc:
        return {"ok": False, "problems": [str(p) for p in exc.problems]}
    return {"ok": True, "problems": [], "counts": {k: len(rules.of(k)) for k in KINDS}}


def describe(rules: RuleSet) -> dict[str, Any]:
    """`socialdesk rules list`: every rule by kind, in evaluation order."""
    return {many: [{"id": r.id, "title": r.title, "active": r.active, "source": r.source,
                    "description": r.description} for r in rules.of(one)] for one, many in KINDS.items()}


def show(rules: RuleSet, key: str) -> dict[str, Any]:
    """`socialdesk rules show TITLE`: one rule, as loaded, ready to copy into a rules file."""
    rule = rules.find(key)
    return {**rule.summary(), "json": {rule.kind: rule.raw}}
