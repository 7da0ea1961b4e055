import pytest

from tests.billing.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, start_fake_stripe


@pytest.fixture(scope="session")
def _fake_stripe_server():
    fake, server = start_fake_stripe()
    yield fake
    server.shutdown()


@pytest.fixture
def fake_stripe(_fake_stripe_server, settings):
    """The real `stripe` library pointed at the fake Stripe API, with test keys."""
    fake = _fake_stripe_server
    with fake.lock:
        fake.requests.clear()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = fake.url
    settings.COMET_RECHARGE_HOLD_SECONDS = 0
    return fake
