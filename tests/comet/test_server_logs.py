import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.models_catalog.celery_worker import Worker, send, unique_queue, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
STRIPE_KEY = "sk_live_" + "51Hq8aB2cD3eF4gH5iJ6kL7mN8oP9qR0sT1uV2wX3yZ4"
WEBHOOK_SECRET = "whsec_" + "Qw3rTy5uI7oP9aS1dF3gH5jK7lZ9xC1v"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(request) -> tuple[httpx.Response, str]:
    """Start the ASGI server as production and `make run` do, make `request`, stop it.

    Returns the response and everything the server wrote (its access log is on).
    """
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "comet.settings.test"}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "comet.asgi:application", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
        response = request(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    return response, output


def test_uvicorn_access_log_never_shows_a_full_api_key():
    # Given the ASGI server with its access log on,
    # when a program asks for its quota with the key in the query string
    # (a key with a bad checksum: refused before any database or cache lookup),
    response, output = serve(lambda url: httpx.get(f"{url}/user/quota", params={"key": KEY}))

    # then the request is answered and logged, with the key cut to its last four characters.
    assert response.status_code == 401
    assert '"GET /user/quota?key=sk-…J3i2 HTTP/1.1" 401' in output
    assert KEY not in output
    assert KEY[3:] not in output


def test_a_host_header_holding_a_key_is_logged_masked():
    # Given the ASGI server, when a client sends an API key as its Host header,
    response, output = serve(lambda url: httpx.get(f"{url}/", headers={"Host": KEY}))

    # then Django refuses the host and logs why (message and traceback: DisallowedHost),
    # with the key cut to its last four characters everywhere.
    assert response.status_code == 400
    assert "Invalid HTTP_HOST header: 'sk-…J3i2'" in output
    assert "DisallowedHost" in output
    for secret in (KEY, KEY[3:], KEY.lower()[3:]):
        assert secret not in output


LOG_AN_EXCEPTION = textwrap.dedent(
    """
    import logging, sys
    import django

    django.setup()
    key, stripe_key, webhook_secret = sys.argv[1:4]

    def charge():
        raise RuntimeError(f"upstream refused {key} ({stripe_key}, {webhook_secret})")

    try:
        try:
            charge()
        except RuntimeError as error:
            raise ValueError(f"retry with {key} failed") from error
    except ValueError:
        logging.getLogger("billing").exception("call failed: %s", {"authorization": key})
    """
)


def test_exception_text_and_tracebacks_are_logged_masked():
    # Given Comet's logging configuration,
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "comet.settings.test"}

    # when an exception whose message and chained traceback hold secrets is logged
    # with a secret in the message's arguments,
    result = subprocess.run(
        [sys.executable, "-c", LOG_AN_EXCEPTION, KEY, STRIPE_KEY, WEBHOOK_SECRET],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # then the whole written entry, traceback included, shows only their last four characters.
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "call failed: {'authorization': 'sk-…J3i2'}" in output
    assert "ValueError: retry with sk-…J3i2 failed" in output
    assert "RuntimeError: upstream refused sk-…J3i2 (sk_live_…3yZ4, whsec_…xC1v)" in output
    for secret in (KEY, KEY[3:], STRIPE_KEY, STRIPE_KEY[8:], WEBHOOK_SECRET, WEBHOOK_SECRET[6:]):
        assert secret not in output


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_a_celery_worker_logs_a_failed_task_masked(tmp_path):
    # Given a real Celery worker writing its log to a file,
    log_path = tmp_path / "worker.log"
    queue = unique_queue("comet_logs_test")
    with log_path.open("w") as log:
        worker = Worker(queue=queue, smtp_port=1, output=log)
        try:
            # when a task fails on an argument holding a key (the order id: Django's
            # ValueError quotes it, in the message and in the chained traceback),
            send("billing.tasks.order_receipt_send_task", KEY, queue=queue)
            logged = wait_for(lambda: "Traceback" in log_path.read_text(), timeout=60)
        finally:
            worker.stop()
    output = log_path.read_text()

    # then the worker logs the failure with the key cut to its last four characters.
    assert logged, output
    assert "ValueError" in output
    assert "sk-…J3i2" in output
    assert KEY not in output
    assert KEY[3:] not in output
