"""What the relay reports to Prometheus (`/metrics`, comet/metrics.py).

Kept cheap on the hot path: each request adds to one counter and one histogram,
their labelled children looked up in a dictionary of this module (prometheus-client's
`labels()` takes a lock and builds a key every time); in multiprocess mode each is a
write to this process's memory-mapped file. Labels are bounded: the status code, the
model family of a model the catalog priced (`model_family`), a channel's name.
"""

import functools
import re
from typing import Any

from prometheus_client import Counter, Histogram

# Relay requests take from a few milliseconds (a refusal) to minutes (a long stream).
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
# A request refused before its model was priced (bad key, unknown model, bad body).
NO_FAMILY = "none"
# A request whose answer never started (the client went away first).
NO_STATUS = "none"

requests_total = Counter(
    "comet_relay_requests",
    "Relay requests answered, by HTTP status and model family.",
    ["status", "family"],
)
request_seconds = Histogram(
    "comet_relay_request_duration_seconds",
    "Time from a relay request's arrival to the end of its answer, by model family.",
    ["family"],
    buckets=_LATENCY_BUCKETS,
)
upstream_errors = Counter(
    "comet_relay_upstream_errors",
    "Failed attempts on an upstream channel (each made the relay try the next one).",
    ["channel"],
)

_FAMILY = re.compile(r"[a-z]+[0-9]*")
_children: dict[tuple[str, str], tuple[Any, Any]] = {}


@functools.lru_cache(maxsize=1024)
def model_family(model_name: str) -> str:
    """Return a priced model's family: its name's first word after any vendor prefix,
    e.g. `gpt` for gpt-4o-mini, `claude` for claude-3-5-sonnet, `o1` for o1-mini."""
    match = _FAMILY.match(model_name.rsplit("/", 1)[-1].lower())
    return match.group(0) if match else NO_FAMILY


def request_observe(*, status: int, family: str, seconds: float) -> None:
    """Count one relay request and its duration."""
    key = (str(status) if status else NO_STATUS, family)
    children = _children.get(key)
    if children is None:
        children = _children[key] = (
            requests_total.labels(*key),
            request_seconds.labels(family),
        )
    children[0].inc()
    children[1].observe(seconds)


def upstream_error_observe(*, channel: str) -> None:
    """Count one failed attempt on an upstream channel."""
    upstream_errors.labels(channel).inc()
