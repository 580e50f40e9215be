"""Prometheus metrics. Label values come only from the config (tenant, model and channel
names) or small fixed sets, never from raw client input, so cardinality stays bounded."""
from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from . import __version__

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)



class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter("relay_requests", "Model calls by outcome", ["tenant", "model", "channel", "api", "status"], registry=r)
        self.duration = Histogram("relay_request_duration_seconds", "Model call duration, to the last byte",
                                  ["tenant", "model", "channel", "api"], buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("relay_time_to_first_token_seconds", "Time to the first generated token (streams)",
                              ["model", "channel", "api"], buckets=TTFT_BUCKETS, registry=r)
        self.upstream = Histogram("relay_upstream_duration_seconds", "Upstream call duration, per attempt",
                                  ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("relay_tokens", "Tokens by kind", ["tenant", "model", "channel", "kind"], registry=r)
        self.inflight = Gauge("relay_inflight_requests", "Upstream calls in flight", ["channel"], registry=r, multiprocess_mode="livesum")
        self.channel_up = Gauge("relay_channel_up", "1 unless the channel is cooling down", ["channel"], registry=r, multiprocess_mode="min")
        self.cooldowns = Counter("relay_channel_cooldowns", "Times a channel started cooling down (breaker opened or upstream 429)",
                                 ["channel"], registry=r)
        self.failovers = Counter("relay_failovers", "Requests moved to another channel", ["model", "from_channel"], registry=r)
        self.upstream_errors = Counter("relay_upstream_errors", "Upstream failures", ["channel", "reason"], registry=r)
        self.rate_limited = Counter("relay_rate_limited", "Requests refused by tenant limits", ["tenant", "limit"], registry=r)
        self.cli_processes = Gauge("relay_cli_processes", "Claude CLI processes running", ["channel"], registry=r, multiprocess_mode="livesum")
        self.reloads = Counter("relay_config_reloads", "Config reloads", ["result"], registry=r)
        self.budget_left = Gauge("relay_budget_remaining_ratio", "Share of the period's token budget left",
                                 ["tenant"], registry=r, multiprocess_mode="min")
        self.store_errors = Counter("relay_store_errors", "Usage store operations that failed", ["op"], registry=r)
        self.build = Gauge("relay_build_info", "Relay version", ["version"], registry=r, multiprocess_mode="max")
        self.build.labels(__version__).set(1)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, memoised: label sets come from the config, so the memo
        stays small, and the hot path skips prometheus-client's lock and checks."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


def reason_of(status: int, code: str | None) -> str:
    """An upstream failure as one of a small fixed set of reasons."""
    if code == "upstream_unreachable":
        return "unreachable"
    if code == "upstream_timeout" or status == 504:
        return "timeout"
    if code == "upstream_auth_error":
        return "auth"
    if code == "bad_upstream_response":
        return "bad_response"
    if status == 429:
        return "rate_limited"
    if status == 503 or code == "upstream_overloaded":
        return "overloaded"
    return "server_error"


def exposition(registry: CollectorRegistry) -> bytes:
    """This process's metrics, or with several workers (PROMETHEUS_MULTIPROC_DIR set) the
    sum over all of them."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path)  # type: ignore[no-untyped-call]
        return generate_latest(combined)
    return generate_latest(registry)
