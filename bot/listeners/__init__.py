"""Bolt listeners, one module per kind: slash commands, block actions, view submissions, events."""
