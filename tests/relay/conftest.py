"""The relay served for real on loopback, in front of a fake upstream on loopback.

Both servers run in threads of the test process; the tests use `transactional_db`
so the relay's own database connections see what a test created.
"""

import socket
import time
from decimal import Decimal

import pytest
from django.db import connection

from billing.meter import CreditMeter
from billing.services import account_credit
from core.clientaddress import ClientAddressMiddleware
from logs.models import RequestLog
from models_catalog.models import CatalogModel, PricingGroup, Vendor
from models_catalog.services import catalog_entry_create
from relay.app import RelayApplication
from relay.keys import key_rotation
from relay.routing import routing_table_expire
from relay.services import channel_create
from tests.clock import FakeClock
from tests.factories import UserFactory
from tests.fake_upstream import FakeUpstream, ServerThread
from tokens.services import token_create

MODEL = "gpt-test"


def free_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_logs(count: int, timeout: float = 5.0) -> list[RequestLog]:
    """Return the request log rows once `count` exist (settling follows the response)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = list(RequestLog.objects.order_by("pk"))
        if len(logs) >= count or time.monotonic() > deadline:
            return logs
        time.sleep(0.02)


UPSTREAM_KEY = "sk-upstream-secret-for-tests-0001"


@pytest.fixture(scope="session")
def fake_upstream_server():
    app = FakeUpstream()
    server = ServerThread(app).start()
    server.app = app
    yield server
    server.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server):
    """The fake upstream, its statistics reset."""
    fake_upstream_server.app.stats.__init__()
    fake_upstream_server.app.switched_off.clear()
    fake_upstream_server.app.key_answers.clear()
    return fake_upstream_server


def forwarded_for_from_hex(app):
    """Let a test send X-Forwarded-For bytes uvicorn refuses (a NUL), hex-encoded.

    Another server may pass what uvicorn answers 400 to; `x-test-forwarded-for-hex`
    carries such a value, and this puts it into X-Forwarded-For before the entry step.
    """

    async def unhex(scope, receive, send):
        if scope["type"] == "http":
            headers = []
            for name, value in scope["headers"]:
                if name == b"x-test-forwarded-for-hex":
                    name, value = b"x-forwarded-for", bytes.fromhex(value.decode())
                headers.append((name, value))
            scope = {**scope, "headers": headers}
        await app(scope, receive, send)

    return unhex


@pytest.fixture(scope="session")
def relay_server(django_db_setup, django_db_blocker):
    """The relay app as production runs it: behind the step that decides the client's
    address (comet/asgi.py), its credit meter writing settled requests in batches."""
    relay = RelayApplication()
    server = ServerThread(forwarded_for_from_hex(ClientAddressMiddleware(relay))).start()
    server.relay = relay
    yield server
    server.stop()
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        # Whatever the relay still has open (a request cut off mid-call); the test
        # database cannot be dropped while it is.
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def relay_url(relay_server, transactional_db):
    routing_table_expire()
    key_rotation.clear()
    relay_server.relay.tokens.clear()
    relay_server.relay.prices.clear()
    relay_server.relay.lines.clear()
    yield f"{relay_server.url}/v1"
    routing_table_expire()
    # Settlements run after responses: let them finish while the database is open.
    deadline = time.monotonic() + 10
    relay = relay_server.relay
    while (relay.pending_work or relay.refusals.pending) and time.monotonic() < deadline:
        time.sleep(0.01)
    # Write everything, give every grant back and stop the meter's writer thread, so
    # that nothing of the relay's holds a lock while the test database is flushed
    # after the test (a fresh meter starts its writer at its first request).
    relay.meter.close()
    relay.meter = CreditMeter()


@pytest.fixture
def return_grants(relay_server):
    """Return a function that writes what the relay settled and gives its grants back.

    The relay's credit meter holds part of an account's money for up to a second
    after use; tests that check `reserved` call this first.
    """

    def write_and_return() -> None:
        relay_server.relay.meter.return_all()

    return write_and_return


@pytest.fixture
def default_group(transactional_db):
    group, _created = PricingGroup.objects.get_or_create(
        is_default=True, defaults={"name": "default", "display_name": "Default"}
    )
    return group


@pytest.fixture
def catalog_model(default_group):
    vendor, _created = Vendor.objects.get_or_create(name="testvendor", display_name="Test vendor")
    model = CatalogModel(
        name=MODEL, vendor=vendor, model_ratio=Decimal("1.5"), completion_ratio=Decimal("2")
    )
    catalog_entry_create(entry=model)
    return model


@pytest.fixture
def funded_user(transactional_db):
    user = UserFactory()
    account_credit(user_id=user.pk, amount=100_000_000, idempotency_key=f"test:{user.pk}")
    return user


@pytest.fixture
def token_key(funded_user, catalog_model):
    """The full key of an enabled token of a user with $100."""
    _token, raw_key = token_create(user=funded_user, name="tests")
    return raw_key


def make_channel(name: str, base_url: str, **options):
    """Create an OpenAI-compatible channel serving MODEL and make the relay see it."""
    options.setdefault("served_models", [MODEL])
    channel = channel_create(
        name=name,
        kind=options.pop("kind", "openai"),
        base_url=base_url,
        api_key=options.pop("api_key", UPSTREAM_KEY),
        **options,
    )
    routing_table_expire()
    return channel


@pytest.fixture
def openai_channel(fake_upstream, catalog_model):
    return make_channel("fake", f"{fake_upstream.url}/v1")


@pytest.fixture
def token_memory_clock(relay_server, monkeypatch):
    """The clock of the relay's memory of tokens, standing still until the test moves it.

    What the relay remembers of a token lasts `relay.memo.LOCAL_CACHE_SECONDS` on this clock;
    `advance` by that much stands for the wait without waiting.
    """
    memo = relay_server.relay.tokens
    monkeypatch.setattr(memo, "clock", FakeClock(time.monotonic()))
    yield memo.clock
    memo.clear()
