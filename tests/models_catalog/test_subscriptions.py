import pytest
from allauth.account.models import EmailAddress
from django.urls import reverse

from models_catalog.models import PriceChangeSubscription, Vendor

pytestmark = pytest.mark.django_db

URL = reverse("models_catalog:subscription")


def test_profile_shows_the_subscription_card(user_client, catalog):
    html = user_client.get(reverse("accounts:profile")).content.decode()

    assert 'id="price-change-emails"' in html
    assert "Subscribe" in html
    assert "claude-opus-4-20250514" in html  # models to choose from


def test_subscribe_to_chosen_vendors(user_client, user, catalog):
    openai = Vendor.objects.get(name="openai")

    response = user_client.post(URL, {"scope": "vendors", "vendors": [openai.pk]})

    assert response.status_code == 302
    subscription = PriceChangeSubscription.objects.get(user=user)
    assert subscription.is_active
    assert list(subscription.vendors.all()) == [openai]
    assert not subscription.catalog_models.exists()


def test_subscribe_with_htmx_swaps_the_card(user_client, user, catalog):
    response = user_client.post(
        URL, {"scope": "models", "catalog_models": [catalog["o3"].pk]}, HTTP_HX_REQUEST="true"
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<article id="price-change-emails"')
    assert "On · Chosen models" in html
    # The card says it; no flash message waits for the next full page.
    assert "Price change emails: saved." in html
    assert b"Price change emails: saved." not in user_client.get("/pricing").content
    subscription = PriceChangeSubscription.objects.get(user=user)
    assert list(subscription.catalog_models.all()) == [catalog["o3"]]


def test_choosing_vendors_without_any_is_refused(user_client, user, catalog):
    response = user_client.post(URL, {"scope": "vendors"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 400
    assert "Choose at least one vendor" in response.content.decode()
    assert not PriceChangeSubscription.objects.filter(user=user).exists()


def test_an_unverified_email_cannot_subscribe(user_client, user, catalog):
    EmailAddress.objects.filter(user=user).update(verified=False)

    response = user_client.post(URL, {"scope": "all"}, HTTP_HX_REQUEST="true")

    assert response.status_code == 400
    assert "Verify your email address first" in response.content.decode()
    assert not PriceChangeSubscription.objects.filter(user=user).exists()


def test_unsubscribe_from_the_profile(user_client, user, catalog):
    user_client.post(URL, {"scope": "all"})

    user_client.post(URL, {"unsubscribe": "1"})

    assert not PriceChangeSubscription.objects.get(user=user).is_active


def test_subscription_needs_a_login(client, catalog):
    response = client.post(URL, {"scope": "all"})

    assert response.status_code == 302
    assert not PriceChangeSubscription.objects.exists()
