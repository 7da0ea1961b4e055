"""Diagnostic only: the site's ASGI app with metering replaced by no-ops.

`bench.py --unmetered` serves this to show what the relay costs apart from the
reserve and settle transactions. Never deploy it: requests here are not billed.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comet.settings.local")

# comet.asgi sets Django up; relay.app can only be imported after it.
from comet.asgi import application

import relay.app  # isort: skip
import relay.settler  # isort: skip


async def _no_reserve(self, **kwargs) -> None:
    return None


async def _no_settle(**kwargs) -> None:
    return None


def _no_settle_many(settlements: list) -> list:
    return [None] * len(settlements)


relay.app.ReservePool.reserve = _no_reserve  # type: ignore[method-assign]
relay.app.ausage_settle = _no_settle  # type: ignore[assignment]
relay.settler.usage_settle_many = _no_settle_many  # type: ignore[assignment]

__all__ = ["application"]
