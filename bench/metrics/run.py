"""What the relay's metrics add to each request: `relay.metrics.request_observe`.

Times N calls of what the relay's hot path adds per request (one counter, one histogram
observation; an upstream failure adds one more counter), in a fresh process for each
mode: prometheus-client's default in-memory values, and its multiprocess mode
(PROMETHEUS_MULTIPROC_DIR: each value a write to a memory-mapped file). Also times one
scrape of `/metrics`' registry with those values.

    .venv/bin/python bench/metrics/run.py --calls 200000 --repeats 5
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
from relay.metrics import request_observe, upstream_error_observe
calls = int(sys.argv[1])
families = ["gpt", "claude", "gemini", "none"]
statuses = [200, 200, 200, 429, 402, 502]
# Warm the labelled children, as a running relay has.
for family in families:
    for status in statuses:
        request_observe(status=status, family=family, seconds=0.1)
started = time.perf_counter()
for index in range(calls):
    request_observe(status=statuses[index % 6], family=families[index % 4], seconds=0.123)
observe = (time.perf_counter() - started) / calls
started = time.perf_counter()
for index in range(calls // 10):
    upstream_error_observe(channel="bench")
failure = (time.perf_counter() - started) / (calls // 10)
from prometheus_client import CollectorRegistry, generate_latest, REGISTRY
import os
registry = CollectorRegistry()
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    from prometheus_client.multiprocess import MultiProcessCollector
    MultiProcessCollector(registry)
else:
    registry = REGISTRY
started = time.perf_counter()
for _ in range(20):
    generate_latest(registry)
scrape = (time.perf_counter() - started) / 20
print(observe * 1e6, failure * 1e6, scrape * 1e3)
"""


def run(calls: int, multiprocess_dir: str | None) -> tuple[float, float, float]:
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    if multiprocess_dir:
        environment["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
    output = subprocess.run(
        [sys.executable, "-c", CHILD, str(calls)],
        env=environment,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    observe, failure, scrape = (float(value) for value in output.split())
    return observe, failure, scrape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f}")
    print("| mode | per request µs (median of runs) | per upstream failure µs | scrape ms |")
    print("|---|---|---|---|")
    for mode in ("in-memory", "multiprocess"):
        results = []
        for _ in range(arguments.repeats):
            with tempfile.TemporaryDirectory() as directory:
                results.append(run(arguments.calls, directory if mode == "multiprocess" else None))
        observe, failure, scrape = (
            statistics.median(column) for column in zip(*results, strict=True)
        )
        runs = " / ".join(f"{result[0]:.2f}" for result in results)
        print(f"| {mode} | {observe:.2f} ({runs}) | {failure:.2f} | {scrape:.2f} |")


if __name__ == "__main__":
    main()
