"""`/metrics`: its names, the totals of several processes in one scrape, and who may read it."""

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
import redis
from django.conf import settings as django_settings

from billing import metrics as billing_metrics
from relay.metrics import model_family, request_observe, upstream_error_observe
from tests.billing.helpers import make_token, spend
from tests.logs.helpers import funded_user_with_token

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-metrics-token-0123456789"
AUTHORIZED = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


@pytest.fixture
def token_only(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_ADDRESSES = []
    settings.PROMETHEUS_MULTIPROC_DIR = ""
    return settings


def sample(text: str, line_start: str) -> float:
    """Return the value of the first sample line starting with `line_start`."""
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start!r} in:\n{text}")


# --- what it reports ---------------------------------------------------------------


@pytest.mark.django_db
def test_every_metric_is_named_in_a_scrape(client, token_only, user):
    # Given a relay request counted, an upstream failure, and a request written by the meter
    request_observe(status=200, family=model_family("gpt-4o-mini"), seconds=0.25)
    upstream_error_observe(channel="Alpha")
    spend(funded_user_with_token(user), cost=100)

    text = client.get("/metrics", **AUTHORIZED).content.decode()

    for name in (
        'comet_relay_requests_total{family="gpt",status="200"}',
        'comet_relay_request_duration_seconds_bucket{family="gpt",le="0.25"}',
        'comet_relay_upstream_errors_total{channel="Alpha"}',
        "comet_billing_writer_lag_seconds_bucket",
        "comet_billing_writer_requests_total",
        "comet_billing_writer_failures_total",
        "comet_billing_grants_taken_total",
        "comet_billing_grants_returned_total",
        "comet_billing_open_grants ",
        "comet_billing_open_grants_micro_usd ",
    ):
        assert any(line.startswith(name) for line in text.splitlines()), name


@pytest.mark.django_db
def test_the_open_grants_are_read_at_scrape_time(client, token_only, user):
    from tests.billing.helpers import hold

    token, _ = make_token(user)
    funded_user_with_token(user)
    hold(token, 700)

    text = client.get("/metrics", **AUTHORIZED).content.decode()

    assert sample(text, "comet_billing_open_grants ") == 1
    assert sample(text, "comet_billing_open_grants_micro_usd ") == 700


@pytest.mark.django_db
def test_the_celery_queue_length_is_the_brokers_list_length(client, token_only):
    token_only.CELERY_TASK_ALWAYS_EAGER = False
    token_only.CELERY_TASK_DEFAULT_QUEUE = "metrics-test-queue"
    broker = redis.Redis.from_url(django_settings.REDIS_URL)
    broker.delete("metrics-test-queue", "metrics-test-queue\x06\x163")
    broker.rpush("metrics-test-queue", "a", "b")
    broker.rpush("metrics-test-queue\x06\x163", "c")
    try:
        text = client.get("/metrics", **AUTHORIZED).content.decode()
    finally:
        broker.delete("metrics-test-queue", "metrics-test-queue\x06\x163")

    assert sample(text, 'comet_celery_queue_length{queue="metrics-test-queue"}') == 3


def test_model_families_are_bounded_words():
    assert model_family("gpt-4o-mini") == "gpt"
    assert model_family("claude-3-5-sonnet-20241022") == "claude"
    assert model_family("o1-mini") == "o1"
    assert model_family("meta-llama/Llama-3.1-70B") == "llama"
    assert model_family("-") == "none"


# --- several processes, one scrape -------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys
    from relay.metrics import request_observe, upstream_error_observe
    from billing import metrics

    count = int(sys.argv[1])
    for _ in range(count):
        request_observe(status=200, family="gpt", seconds=0.02)
    upstream_error_observe(channel="Alpha")
    metrics.writer_requests.inc(count)
    metrics.writer_lag_seconds.observe(0.03)
    """
)


@pytest.mark.django_db
def test_two_processes_are_summed_by_one_scrape(client, token_only, tmp_path):
    # Given two processes sharing one PROMETHEUS_MULTIPROC_DIR (two uvicorn workers)
    environment = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for count in (3, 4):
        subprocess.run(
            [sys.executable, "-c", WORKER, str(count)],
            env=environment,
            cwd=ROOT,
            check=True,
            timeout=60,
        )
    assert len(list(tmp_path.glob("*.db"))) >= 2

    # When any process is scraped in multiprocess mode
    token_only.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    text = client.get("/metrics", **AUTHORIZED).content.decode()

    # Then it reports their totals
    assert sample(text, 'comet_relay_requests_total{family="gpt",status="200"}') == 7
    assert sample(text, 'comet_relay_request_duration_seconds_count{family="gpt"}') == 7
    assert sample(text, 'comet_relay_upstream_errors_total{channel="Alpha"}') == 2
    assert sample(text, "comet_billing_writer_requests_total") == 7
    assert sample(text, "comet_billing_writer_lag_seconds_count") == 2


# --- who may read it ---------------------------------------------------------------


def test_without_a_token_or_addresses_there_is_no_endpoint(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_ADDRESSES = []

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", **AUTHORIZED).status_code == 404


@pytest.mark.django_db
def test_a_missing_or_wrong_token_is_refused(client, token_only):
    for headers in (
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong"},
        {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
        {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}x"},
        {"HTTP_AUTHORIZATION": "Bearer"},
    ):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"comet_" not in response.content
    assert client.get("/metrics", **AUTHORIZED).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200


@pytest.mark.django_db
def test_hostile_headers_are_refused_never_a_500(client, token_only):
    token_only.METRICS_ALLOWED_ADDRESSES = ["198.51.100.0/24"]
    hostile = [
        {"HTTP_AUTHORIZATION": "Bearer \x00" + TOKEN},
        {"HTTP_AUTHORIZATION": "Bearer " + "é" * 10_000},
        {"HTTP_AUTHORIZATION": "Bearer \udcff"},
        {"HTTP_AUTHORIZATION": "\x00"},
        {"REMOTE_ADDR": "<script>", **AUTHORIZED},
        {"REMOTE_ADDR": "", **AUTHORIZED},
        {"REMOTE_ADDR": "fe80::1%eth0", **AUTHORIZED},
        {"REMOTE_ADDR": "198.51.100.7", "HTTP_AUTHORIZATION": "Bearer \x00"},
    ]
    for headers in hostile:
        assert client.get("/metrics", **headers).status_code in (401, 404), headers


@pytest.mark.django_db
def test_an_address_allowed_alone_needs_no_token(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_ADDRESSES = ["198.51.100.0/24", "2001:db8::/32"]

    assert client.get("/metrics", REMOTE_ADDR="198.51.100.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::5").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    # With a token too, both must match
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.7").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9", **AUTHORIZED).status_code == 404
    assert client.get("/metrics", REMOTE_ADDR="198.51.100.7", **AUTHORIZED).status_code == 200


def _asgi_get(headers: dict[str, str | bytes], peer: str) -> int:
    from comet.asgi import application

    async def get() -> int:
        transport = httpx.ASGITransport(app=application, client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return (await http.get("/metrics", headers=headers)).status_code

    return asyncio.run(get())


@pytest.mark.django_db(transaction=True)
def test_the_allowed_address_is_the_client_behind_a_trusted_proxy(settings):
    # Given Prometheus at 198.51.100.7 behind the proxy on 127.0.0.1 (TRUSTED_PROXIES)
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_ADDRESSES = ["198.51.100.7"]
    settings.PROMETHEUS_MULTIPROC_DIR = ""
    settings.ALLOWED_HOSTS = ["localhost"]

    # Then the proxy passing it on is let in, decided as everywhere (core/clientaddress.py)
    assert _asgi_get({"X-Forwarded-For": "198.51.100.7"}, peer="127.0.0.1") == 200
    # and the proxy itself, or a client naming itself from an untrusted address, is not
    assert _asgi_get({}, peer="127.0.0.1") == 404
    assert _asgi_get({"X-Forwarded-For": "198.51.100.7"}, peer="203.0.113.9") == 404
    # nor a client naming the allowed address left of its own through the proxy
    assert _asgi_get({"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}, peer="127.0.0.1") == 404
    # and a hostile header is answered, not a 500
    hostile = "<script>, \u0661.2.3.4".encode()
    assert _asgi_get({"X-Forwarded-For": hostile}, peer="127.0.0.1") == 404


def test_the_writer_lag_is_observed_when_a_batch_is_written(db, user):
    before = billing_metrics.writer_lag_seconds.collect()[0]
    count_before = next(s.value for s in before.samples if s.name.endswith("_count"))

    spend(funded_user_with_token(user), cost=100)

    after = billing_metrics.writer_lag_seconds.collect()[0]
    assert next(s.value for s in after.samples if s.name.endswith("_count")) == count_before + 1
