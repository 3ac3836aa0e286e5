"""Rule files: loading, validation and reporting (R3, R24; issue "business rules", administration)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from warehouse.rules import RuleError, check_file, describe, load_rules, show

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
NOTIFY = {"field": "notification_slack", "value": ["#ops", "Ticket {{ticket.id}}"]}


def write(folder: Path, name: str, data: dict) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def test_the_shipped_rules_load_and_round_robin_is_off_by_default() -> None:
    rules = load_rules(None)
    titles = {r.title: r.active for r in rules.triggers}
    assert titles["Announce new social tickets in triage"] is True
    assert titles["Assign new social tickets round-robin"] is False
    assert [a.title for a in rules.automations] == ["Warn before the WhatsApp window closes",
                                                    "Close solved tickets after 4 days"]
    assert [v.title for v in rules.views] == ["Your social messaging tickets", "Unassigned social messaging tickets"]


def test_round_robin_turns_on_with_the_assignment_settings() -> None:
    rules = load_rules(None, {"enabled": True, "agents": ["UA", "UB"], "by": "channel"})
    assert rules.find("Assign new social tickets round-robin").active is True


def test_enabled_assignment_without_agents_is_refused() -> None:
    with pytest.raises(RuleError, match=r"\[assignment\]: field agents"):
        load_rules(None, {"enabled": True})


def test_an_error_names_the_file_the_rule_and_the_field(tmp_path: Path) -> None:
    write(tmp_path / "rules", "ops.json", {"trigger": {"title": "Page the boss", "conditions": {
        "all": [{"field": "status", "operator": "is", "value": "open"}]},
        "actions": [{"field": "notification_sms", "value": "hi"}]}})
    with pytest.raises(RuleError) as err:
        load_rules(tmp_path / "rules")
    (problem,) = err.value.problems
    assert (Path(problem.file).name, problem.rule, problem.field) == ("ops.json", "Page the boss", "notification_sms")
    assert "ops.json: trigger 'Page the boss': field notification_sms: unsupported action field" in str(err.value)


def test_unsupported_zendesk_fields_are_reported_not_ignored(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "unsupported_trigger.json", tmp_path / "zendesk.json")
    with pytest.raises(RuleError) as err:
        load_rules(tmp_path)
    assert sorted(p.field for p in err.value.problems) == ["notification_user", "ticket_form_id"]


def test_a_condition_with_a_bad_value_names_its_field(tmp_path: Path) -> None:
    write(tmp_path, "a.json", {"trigger": {"title": "T", "conditions": {
        "all": [{"field": "status", "operator": "is", "value": "waiting"}]}, "actions": [NOTIFY]}})
    report = check_file(tmp_path / "a.json")
    assert report["ok"] is False and "field status" in report["problems"][0] and "waiting" in report["problems"][0]


def test_an_unknown_placeholder_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "m.json", {"macro": {"title": "Hi", "actions": [
        {"field": "comment_value", "value": "Dear {{ticket.organization.name}}"}]}})
    assert "unknown placeholder {{ticket.organization.name}}" in check_file(tmp_path / "m.json")["problems"][0]


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(RuleError, match="broken.json: not valid JSON"):
        load_rules(tmp_path)


def test_an_automation_its_own_actions_cannot_make_false_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "auto.json", {"automation": {"title": "Nag forever", "conditions": {
        "all": [{"field": "hours_since_created", "operator": "greater_than", "value": "2"}]}, "actions": [NOTIFY]}})
    with pytest.raises(RuleError, match="'Nag forever': field conditions: no condition in 'all' is made false"):
        load_rules(tmp_path)


def test_an_automation_that_tags_what_it_checks_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "auto.json", {"automation": {"title": "Nag once", "conditions": {"all": [
        {"field": "hours_since_created", "operator": "greater_than", "value": "2"},
        {"field": "current_tags", "operator": "not_includes", "value": "nagged"}]},
        "actions": [NOTIFY, {"field": "current_tags", "value": "nagged"}]}})
    assert load_rules(tmp_path).find("Nag once").kind == "automation"


def test_an_automation_needs_a_time_condition(tmp_path: Path) -> None:
    write(tmp_path, "auto.json", {"automation": {"title": "No clock", "conditions": {"all": [
        {"field": "status", "operator": "is", "value": "open"}]},
        "actions": [{"field": "status", "value": "pending"}]}})
    with pytest.raises(RuleError, match="needs a time condition"):
        load_rules(tmp_path)


def test_update_conditions_are_for_triggers_only(tmp_path: Path) -> None:
    write(tmp_path, "auto.json", {"automation": {"title": "Odd", "conditions": {"all": [
        {"field": "update_type", "operator": "is", "value": "Create"},
        {"field": "hours_since_solved", "operator": "greater_than", "value": "1"}]},
        "actions": [{"field": "status", "value": "closed"}]}})
    with pytest.raises(RuleError, match="field update_type: .*only triggers"):
        load_rules(tmp_path)


def test_an_admin_rule_with_a_shipped_title_replaces_it_in_place(tmp_path: Path) -> None:
    shipped = load_rules(None).find("Announce new social tickets in triage")
    write(tmp_path, "mine.json", {"trigger": {**shipped.raw, "active": False}})
    rules = load_rules(tmp_path)
    assert rules.triggers[0].title == shipped.title and rules.triggers[0].active is False
    assert rules.triggers[0].source.endswith("mine.json")


def test_the_same_title_in_two_admin_files_is_refused(tmp_path: Path) -> None:
    rule = {"macro": {"title": "Greet", "actions": [{"field": "comment_value", "value": "Hello"}]}}
    write(tmp_path, "a.json", rule)
    write(tmp_path, "b.json", rule)
    with pytest.raises(RuleError, match="b.json: macro 'Greet': field title: also defined in .*a.json"):
        load_rules(tmp_path)


def test_list_and_show_describe_the_rules() -> None:
    rules = load_rules(None)
    listed = describe(rules)
    assert {"triggers", "automations", "macros", "views"} <= set(listed)
    shown = show(rules, "close solved tickets after 4 days")
    assert shown["kind"] == "automation" and shown["json"]["automation"]["actions"] == [
        {"field": "status", "value": "closed"}]
