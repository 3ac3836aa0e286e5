"""Prometheus metrics for /metrics: webhooks by channel and answer, ack latency, the ingest log (how far
behind tickets are, dead letters), outbox, store size."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhooks = Counter("socialdesk_webhooks_total", "Webhook requests by channel and HTTP answer",
                                ["channel", "status"], registry=self.registry)
        self.webhook_seconds = Histogram("socialdesk_webhook_seconds", "Webhook answer latency (verify+store)",
                                         ["channel"], registry=self.registry,
                                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
        self.send_attempts = Counter("socialdesk_outbox_attempts_total", "Reply send attempts by outcome",
                                     ["channel", "outcome"], registry=self.registry)
        self.slack_ack_seconds = Histogram("socialdesk_slack_ack_seconds", "Slack request answer latency",
                                           registry=self.registry, buckets=(.01, .05, .1, .25, .5, 1, 2, 3))
        self.outbox_depth = Gauge("socialdesk_outbox_depth", "Replies waiting to be sent", registry=self.registry)
        self.skipped = Counter("socialdesk_webhook_entries_skipped_total",
                               "Webhook entries skipped because we do not understand them (the rest was stored)",
                               ["channel"], registry=self.registry)
        self._webhook_children: dict[tuple[str, int], tuple[Any, Any]] = {}
        # The ingest log (issue 15): webhooks are answered once logged, tickets follow.
        self.ingest_lag_seconds = Histogram(
            "socialdesk_ingest_lag_seconds", "From a webhook's entry in the log to its tickets being committed",
            registry=self.registry, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        self.ingest_round_seconds = Histogram(
            "socialdesk_ingest_round_seconds", "How long the writer takes to turn a batch of the log into tickets",
            registry=self.registry, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5))
        self.ingest_round_entries = Histogram(
            "socialdesk_ingest_round_entries", "Webhooks turned into tickets in one batch (one transaction)",
            registry=self.registry, buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000))
        self.log_waiting = Gauge("socialdesk_ingest_log_waiting",
                                 "Webhooks acknowledged (in the log) and not yet turned into tickets",
                                 registry=self.registry)
        self.log_oldest_seconds = Gauge("socialdesk_ingest_log_oldest_seconds",
                                        "Age of the oldest webhook in the log not yet turned into tickets",
                                        registry=self.registry)
        self.dead_letters = Gauge("socialdesk_dead_letters",
                                  "Deliveries whose processing failed, waiting in dead_letters for a retry",
                                  registry=self.registry)
        self.store_bytes = Gauge("socialdesk_store_bytes", "Size of the DuckDB file", registry=self.registry)

    def observe_webhook(self, channel: str, status: int, seconds: float, skipped: int = 0) -> None:
        # Called for every webhook: the labelled children are looked up once.
        key = (channel, status)
        children = self._webhook_children.get(key)
        if children is None:
            children = self._webhook_children[key] = (self.webhooks.labels(channel, str(status)),
                                                      self.webhook_seconds.labels(channel))
        children[0].inc()
        children[1].observe(seconds)
        if skipped:
            self.skipped.labels(channel).inc(skipped)

    def observe_attempt(self, channel: str, outcome: str) -> None:
        self.send_attempts.labels(channel, outcome).inc()

    def observe_lag(self, lags: list[float]) -> None:
        """Called by the store's writer for every processed round: seconds from log to tickets."""
        observe = self.ingest_lag_seconds.observe
        for seconds in lags:
            observe(seconds)

    def observe_round(self, entries: int, seconds: float) -> None:
        self.ingest_round_entries.observe(entries)
        self.ingest_round_seconds.observe(seconds)

    def render(self, outbox_depth: Callable[[], int], store_path: str,
               log_status: dict[str, Any] | None = None) -> bytes:
        self.outbox_depth.set(outbox_depth())
        if log_status is not None:
            self.log_waiting.set(log_status["waiting"])
            self.log_oldest_seconds.set(log_status["oldest_seconds"])
            self.dead_letters.set(log_status["dead_letters"])
        if os.path.exists(store_path):
            self.store_bytes.set(os.path.getsize(store_path))
        return generate_latest(self.registry)
