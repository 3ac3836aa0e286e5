"""Business rules in Zendesk's JSON shapes: triggers, automations and macros (R3, R22, R24).

Rules are files (the shipped ones in `warehouse/defaults/`, the admins' in `rules/*.json`), loaded
and validated at start-up. Conditions compile to SQL (`warehouse.conditions`); actions apply
through the ticket operations with the rule as the actor; Slack notifications are events that the
Slack app delivers (the warehouse never talks to Slack).
"""

from __future__ import annotations

from warehouse.rules.affecting import rules_affecting
from warehouse.rules.automations import run_automations
from warehouse.rules.loader import (
    Problem,
    Rule,
    RuleError,
    RuleSet,
    check_directory,
    check_file,
    describe,
    load_rules,
    show,
)
from warehouse.rules.macros import apply_macro, preview_macro
from warehouse.rules.triggers import run_triggers, trigger_runner

__all__ = ["Problem", "Rule", "RuleError", "RuleSet", "apply_macro", "check_directory", "check_file", "describe",
           "load_rules", "preview_macro", "rules_affecting", "run_automations", "run_triggers", "show",
           "trigger_runner"]
