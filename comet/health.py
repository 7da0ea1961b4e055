"""`/healthz`: is each part this process depends on reachable?"""

import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"healthz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=10)
    if cache.get(key) != "1":
        raise RuntimeError("value written to the cache could not be read back")
    cache.delete(key)


def _check_broker() -> str | None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "in-process (no REDIS_URL: tasks run where they are enqueued)"
    from comet.celery import app

    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=2)
    return None


def _run(check: Callable[[], str | None]) -> dict[str, object]:
    started = time.perf_counter()
    try:
        note = check()
    except Exception as error:  # A health check reports every failure, whatever it is.
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    result: dict[str, object] = {
        "ok": True,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if note:
        result["note"] = note
    return result


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Report database, cache and broker reachability: 200 when all answer, else 503."""
    checks = {
        "database": _run(_check_database),
        "cache": _run(_check_cache),
        "broker": _run(_check_broker),
    }
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
