import pytest
from django.core.cache import cache
from django.utils import timezone, translation

from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _clear_cache():
    """Rate-limit counters live in Redis: every test starts with none."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _language_and_zone_reset():
    """Every test starts in the site's default language and zone.

    A page served to the test client activates its reader's language and time zone in
    this thread (LocaleMiddleware, the time-zone middleware) and leaves them active after
    the response: without this, a test that reads a page in Chinese would make a later
    test's direct call speak Chinese.
    """
    translation.deactivate()
    timezone.deactivate()
    yield
    translation.deactivate()
    timezone.deactivate()


@pytest.fixture(autouse=True)
def _celery_join_flag_reset():
    """Undo a flag that eager tasks run from several threads at once can leave set.

    Celery marks "a task is running here, never block on a result" in a process-wide
    flag that each eager call saves and restores; two threads interleaving (the
    concurrent webhook tests) can restore it to "set", and a later test's
    `.delay().get()` would then be refused.
    """
    yield
    from celery._state import _set_task_join_will_block

    _set_task_join_will_block(False)


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def user_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def _fake_stripe_server():
    from tests.billing.stripe_fake import start_fake_stripe

    fake, server = start_fake_stripe()
    yield fake
    server.shutdown()


@pytest.fixture
def fake_stripe(_fake_stripe_server, settings):
    """The real `stripe` library pointed at a fake Stripe API on loopback, with test keys."""
    from tests.billing.stripe_fake import SECRET_KEY, WEBHOOK_SECRET

    fake = _fake_stripe_server
    with fake.lock:
        fake.requests.clear()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = fake.url
    return fake
