"""A relay process's metering, alone in its own OS process (tests/billing/test_concurrency.py).

Usage: python -m tests.billing.meter_process <token id> <user id> <requests> <cost> <tag>
Spends `requests` requests of `cost` micro-USD each through one CreditMeter, as a
relay process does, then writes everything, returns its grants and prints one JSON
line: {"served": n, "refused": n, "codes": [...]}.
"""

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.test")
django.setup()

from billing.grants import UsageRefused  # noqa: E402
from billing.meter import CreditMeter  # noqa: E402
from logs.data import RequestLogData  # noqa: E402


def main() -> None:
    token_id, user_id, requests, cost = (int(value) for value in sys.argv[1:5])
    tag = sys.argv[5]
    log = RequestLogData(model="gpt-4o-mini", client_ip="203.0.113.7", token_name="two")
    meter = CreditMeter()
    served = refused = 0
    codes: set[str] = set()
    for number in range(requests):
        request_id = f"{tag}-{number}"
        try:
            meter.reserve(token_id=token_id, user_id=user_id, request_id=request_id, amount=cost)
        except UsageRefused as refusal:
            refused += 1
            codes.add(refusal.code)
            continue
        meter.settle(request_id=request_id, cost=cost, log=log)
        served += 1
    meter.close()
    print(json.dumps({"served": served, "refused": refused, "codes": sorted(codes)}))


if __name__ == "__main__":
    main()
