import pytest
from allauth.account.models import EmailAddress
from django.contrib.contenttypes.models import ContentType

from models_catalog.demo_catalog import load_demo_catalog
from models_catalog.models import CatalogModel, PriceChangeSubscription, PricingGroup, Vendor
from models_catalog.services import price_change_subscription_save
from tests.factories import StaffFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_content_types():
    """Forget content type ids cached while another test ran on a flushed database.

    In random order, a test can run right after a transactional test's flush, create
    content types and roll them back; a later admin log entry would cite the stale id.
    """
    ContentType.objects.clear_cache()


@pytest.fixture
def catalog(db):
    load_demo_catalog()
    return {model.name: model for model in CatalogModel.objects.select_related("vendor")}


@pytest.fixture
def admin_user(db):
    return StaffFactory()


@pytest.fixture
def default_group(db):
    return PricingGroup.objects.get(is_default=True)


@pytest.fixture
def subscribe(db):
    """Make a verified user with a price-change subscription."""

    def make(scope="all", vendors=(), models=(), **user_fields):
        user = UserFactory(**user_fields)
        return price_change_subscription_save(
            user=user,
            scope=scope,
            vendors=[Vendor.objects.get(name=name) for name in vendors],
            catalog_models=[CatalogModel.objects.get(name=name) for name in models],
        )

    return make


@pytest.fixture
def unverified_subscription(db, catalog):
    """A subscription whose user's email is no longer verified (made before it changed)."""
    user = UserFactory()
    subscription = PriceChangeSubscription.objects.create(user=user, scope="all")
    EmailAddress.objects.filter(user=user).update(verified=False)
    return subscription
