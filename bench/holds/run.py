"""Holds benchmark: the relay's prompt count and hold against what the vendors bill.

Generates the seeded corpus (`corpus.py`), asks the mock upstream (`vendor.py`, served
on loopback) for each call's usage, and compares with the hold of the relay's estimator
(`relay.calls`) and with the hold of the estimator before it (every byte of the body a
prompt token, 4,096 completion tokens without max_tokens). Prices are the demo catalog's.

    DJANGO_SETTINGS_MODULE=comet.settings.test .venv/bin/python bench/holds/run.py --calls 2000

A false 402 is a call refused although the balance covered its prompt as the vendor
counts it plus the completion it allows. It is measured at the tightest such balance
(exactly that amount: any count above the vendor's refuses) and at $2.
"""

import argparse
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

import django
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.test")
django.setup()

from bench.holds import corpus, vendor  # noqa: E402
from models_catalog.demo_catalog import (  # noqa: E402
    CHAT,
    CHAT_COMPLETION_RESERVE,
    COMPLETION_RESERVES,
    MODELS,
)
from models_catalog.pricing import request_cost  # noqa: E402
from models_catalog.selectors import ModelPrice  # noqa: E402
from relay import calls, counting, upstream  # noqa: E402
from relay.app import COUNT_ON_THREAD_BYTES  # noqa: E402
from tests.fake_upstream import ServerThread  # noqa: E402

ENDPOINTS = {
    "chat": upstream.CHAT,
    "messages": upstream.MESSAGES,
    "embeddings": upstream.EMBEDDINGS,
}
OLD_DEFAULT_COMPLETION = 4096
OLD_MAX_PROMPT = 1_000_000
TWO_DOLLARS = 2_000_000
THREAD_BYTES = COUNT_ON_THREAD_BYTES


def prices() -> dict[str, ModelPrice]:
    found = {}
    for name, _vendor, kind, context, ratio, completion, cached, per_call in MODELS:
        reserve = COMPLETION_RESERVES.get(name, CHAT_COMPLETION_RESERVE if kind == CHAT else None)
        found[name] = ModelPrice(
            model_name=name,
            kind=kind,
            model_ratio=ratio,
            completion_ratio=completion,
            cached_ratio=cached,
            price_per_call=per_call,
            group_ratio=Decimal(1),
            context_window=context,
            completion_reserve=reserve,
        )
    return found


def old_hold(body: dict, raw_size: int, price: ModelPrice, has_completion: bool) -> tuple[int, int]:
    """Return (hold, completion allowed) of the estimator this one replaced."""
    completion = 0
    if has_completion:
        completion = next(
            (body[k] for k in calls.COMPLETION_LIMIT_KEYS if isinstance(body.get(k), int)),
            OLD_DEFAULT_COMPLETION,
        )
        completion *= max(
            [1] + [body[k] for k in calls.CHOICE_KEYS if isinstance(body.get(k), int)]
        )
    prompt = min(raw_size, OLD_MAX_PROMPT)
    return request_cost(price, prompt_tokens=prompt, completion_tokens=completion), completion


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=17)
    arguments = parser.parse_args()

    started = time.perf_counter()
    calls_list = corpus.generate(arguments.calls, seed=arguments.seed)
    print(f"corpus: {len(calls_list)} calls in {time.perf_counter() - started:.1f} s")
    counting.encodings_load()
    catalog = prices()
    mock = vendor.VendorUpstream()
    server = ServerThread(mock).start()
    rows = []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for number, call in enumerate(calls_list):
                raw = json.dumps(call.body).encode()
                mock.fetched = call.fetched
                path = {"chat": "/v1/chat/completions", "messages": "/v1/messages"}.get(
                    call.endpoint, "/v1/embeddings"
                )
                answer = client.post(
                    path, content=raw, headers={"content-type": "application/json"}
                )
                usage = answer.json()["usage"]
                actual_prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
                actual_completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
                price = catalog[call.model]
                endpoint = ENDPOINTS[call.endpoint]
                tick = time.perf_counter()
                counted = calls.prompt_count(body=call.body, endpoint=endpoint, price=price)
                hold = calls.reservation_amount(
                    prompt_tokens=counted,
                    body=call.body,
                    price=price,
                    has_completion=endpoint.has_completion,
                )
                seconds = time.perf_counter() - tick
                allowed = (
                    calls.completion_allowed(body=call.body, price=price)
                    if endpoint.has_completion
                    else 0
                )
                hold_before, allowed_before = old_hold(
                    call.body, len(raw), price, endpoint.has_completion
                )
                actual_cost = request_cost(
                    price, prompt_tokens=actual_prompt, completion_tokens=actual_completion
                )
                rows.append(
                    {
                        "kind": call.kind,
                        "model": call.model,
                        "bytes": len(raw),
                        "counted": counted,
                        "actual_prompt": actual_prompt,
                        "seconds": seconds,
                        "actual_cost": actual_cost,
                        "new": (
                            hold,
                            request_cost(
                                price, prompt_tokens=actual_prompt, completion_tokens=allowed
                            ),
                        ),
                        "old": (
                            hold_before,
                            request_cost(
                                price, prompt_tokens=actual_prompt, completion_tokens=allowed_before
                            ),
                        ),
                        "old_counted": min(len(raw), OLD_MAX_PROMPT),
                        "past_allowed": actual_completion > allowed,
                    }
                )
                if number and number % 500 == 0:
                    print(f"  {number} calls")
    finally:
        server.stop()
    report(rows)


def report(rows: list[dict]) -> None:
    print(
        f"\n{len(rows)} calls; kinds: "
        + ", ".join(f"{kind} {sum(r['kind'] == kind for r in rows)}" for kind in corpus.KINDS)
    )
    for label, counted_key in (("new", "counted"), ("old", "old_counted")):
        ratios = [r[counted_key] / r["actual_prompt"] for r in rows]
        print(
            f"{label}: counted/actual prompt p1 {percentile(ratios, 0.01):.3f}"
            f"  p50 {percentile(ratios, 0.5):.3f}  p99 {percentile(ratios, 0.99):.3f}"
            f"  max {max(ratios):.3f}"
        )
        exceeded = [r for r in rows if r["actual_cost"] > r[label][0]]
        overruns = [r["actual_cost"] - r[label][0] for r in exceeded]
        shares = [(r["actual_cost"] - r[label][0]) / r["actual_cost"] for r in exceeded]
        print(
            f"     actual cost > hold: {len(exceeded) / len(rows):.2%}"
            + (
                f" (median overrun {statistics.median(overruns)} micro-USD,"
                f" {statistics.median(shares):.1%} of the call's cost)"
                if exceeded
                else ""
            )
        )
        if label == "new" and exceeded:
            past = sum(r["past_allowed"] for r in exceeded)
            low = len(exceeded) - past
            print(
                f"     of those, the answer ran past the completion reserve (no max_tokens):"
                f" {past / len(rows):.2%}; the prompt counted low: {low / len(rows):.2%}"
            )
        tight = sum(r[label][0] > r[label][1] for r in rows)
        covered = [r for r in rows if r[label][1] <= TWO_DOLLARS]
        at_two = sum(r[label][0] > TWO_DOLLARS for r in covered)
        print(
            f"     false 402 at the tightest covering balance: {tight / len(rows):.2%}"
            f" ({tight} of {len(rows)});  with $2: {at_two / len(covered):.2%}"
            f" ({at_two} of {len(covered)} calls $2 covers)"
        )
    print("\nper kind (new): ratio p50 / p99, false 402 at the tightest balance")
    for kind in corpus.KINDS:
        subset = [r for r in rows if r["kind"] == kind]
        if not subset:
            continue
        ratios = [r["counted"] / r["actual_prompt"] for r in subset]
        false = sum(r["new"][0] > r["new"][1] for r in subset)
        print(
            f"  {kind:<11} {len(subset):>5} calls  {percentile(ratios, 0.5):.3f} /"
            f" {percentile(ratios, 0.99):.3f}  {false / len(subset):.2%}"
        )
    print("\nhold computation (count + price), in the event loop and on a worker thread:")
    for label, subset in (
        (f"bodies <= {THREAD_BYTES // 1024} KB", [r for r in rows if r["bytes"] <= THREAD_BYTES]),
        (f"bodies > {THREAD_BYTES // 1024} KB", [r for r in rows if r["bytes"] > THREAD_BYTES]),
    ):
        if subset:
            times = [r["seconds"] * 1e6 for r in subset]
            print(
                f"  {label:<16} {len(subset):>5} calls: p50 {percentile(times, 0.5):.0f} µs,"
                f" p99 {percentile(times, 0.99):.0f} µs, max {max(times):.0f} µs"
                f" (largest body {max(r['bytes'] for r in subset) / 1e6:.2f} MB)"
            )


if __name__ == "__main__":
    main()
