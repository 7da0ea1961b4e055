"""What the credit meter reports to Prometheus (`/metrics`, comet/metrics.py).

Counters and histograms only: in multiprocess mode (PROMETHEUS_MULTIPROC_DIR) each
process writes its own file and one scrape sums them. The open grants are read from
the database when `/metrics` is scraped (`billing.selectors.open_grants_summary`).
"""

from prometheus_client import Counter, Histogram

# From 1 ms (a batch written at once) to a minute (the database was away).
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

writer_lag_seconds = Histogram(
    "comet_billing_writer_lag_seconds",
    "Time from the oldest request of a written batch settling in memory to its batch "
    "being written to the books.",
    buckets=_LAG_BUCKETS,
)
writer_requests = Counter(
    "comet_billing_writer_requests",
    "Settled requests the credit meter wrote to the books.",
)
writer_failures = Counter(
    "comet_billing_writer_failures",
    "Rounds of the credit meter's writer that failed (what was not written is retried).",
)
grants_taken = Counter(
    "comet_billing_grants_taken",
    "Credit grants taken or topped up by the credit meter.",
)
grants_returned = Counter(
    "comet_billing_grants_returned",
    "Credit grants the credit meter gave back, wholly or their unused part.",
)
