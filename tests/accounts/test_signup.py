import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from tests.factories import DEFAULT_PASSWORD, UserFactory

User = get_user_model()
pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "a-Long-and-unusual-passphrase-42"


def sign_up(client, email, password=STRONG_PASSWORD, password2=None):
    return client.post(
        reverse("account_signup"),
        {"email": email, "password1": password, "password2": password2 or password},
    )


def confirmation_link(message) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+/)", message.body)
    assert match, message.body
    return match.group(1)


def test_sign_up_creates_an_unverified_user_and_sends_the_verification_email(client):
    response = sign_up(client, "New.Person@Example.com")

    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    user = User.objects.get()
    assert user.email == "new.person@example.com"
    assert not EmailAddress.objects.get(user=user).verified
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new.person@example.com"]
    assert "/accounts/confirm-email/" in mail.outbox[0].body


def test_unverified_user_cannot_reach_the_console(client):
    sign_up(client, "waiting@example.com")
    client.logout()

    response = client.post(
        reverse("account_login"), {"login": "waiting@example.com", "password": STRONG_PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert "_auth_user_id" not in client.session


def test_verification_link_verifies_and_signs_in(client):
    sign_up(client, "verify@example.com")
    link = confirmation_link(mail.outbox[0])

    page = client.get(link)
    assert page.status_code == 200
    response = client.post(link)

    assert response.status_code == 302
    assert EmailAddress.objects.get(email="verify@example.com").verified
    home = client.get(reverse("console:home"))
    assert b"Welcome," in home.content
    assert b"Sign out" in home.content


def test_wrong_verification_link_says_so_and_verifies_nothing(client):
    sign_up(client, "wrong-link@example.com")

    response = client.get("/accounts/confirm-email/not-a-real-key/")

    assert response.status_code == 200
    assert b"expired or is invalid" in response.content
    assert not EmailAddress.objects.get(email="wrong-link@example.com").verified


def test_taken_email_creates_nothing_and_tells_its_owner(client):
    UserFactory(email="taken@example.com")
    mail.outbox.clear()

    response = sign_up(client, "Taken@example.com")

    # Answered like any sign-up, so the form reveals no accounts ...
    assert response.status_code == 302
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1
    # ... while the owner learns someone tried to register their address.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["taken@example.com"]
    assert "already" in mail.outbox[0].body.lower()


@pytest.mark.parametrize(
    ("email", "password", "password2", "message"),
    [
        ("not-an-email", STRONG_PASSWORD, None, b"Enter a valid email address."),
        ("short@example.com", "abc", None, b"This password is too short."),
        ("common@example.com", "password123", None, b"This password is too common."),
        ("digits@example.com", "8472910365019", None, b"This password is entirely numeric."),
        ("mismatch@example.com", STRONG_PASSWORD, "something-else-entirely", b"same password"),
    ],
)
def test_bad_sign_up_input_is_explained_and_creates_nothing(
    client, email, password, password2, message
):
    response = sign_up(client, email, password, password2)

    assert response.status_code == 200
    assert message in response.content
    assert User.objects.count() == 0
    assert EmailAddress.objects.count() == 0
    assert mail.outbox == []


def test_sixth_failed_login_within_five_minutes_is_refused(client):
    UserFactory(email="target@example.com")
    login_url = reverse("account_login")

    for _ in range(5):
        response = client.post(login_url, {"login": "target@example.com", "password": "wrong"})
        assert response.status_code == 200
        assert b"The email address and/or password you specified are not correct." in (
            response.content
        )

    response = client.post(login_url, {"login": "target@example.com", "password": DEFAULT_PASSWORD})

    # Even the right password is refused until the window passes.
    assert response.status_code == 200
    assert b"Too many failed login attempts. Try again later." in response.content
    assert "_auth_user_id" not in client.session


def test_password_reset_sends_a_link_that_sets_a_new_password(client):
    user = UserFactory(email="forgot@example.com")

    response = client.post(reverse("account_reset_password"), {"email": "forgot@example.com"})
    assert response.status_code == 302
    match = re.search(
        r"https?://[^/\s]+(/accounts/password/reset/key/[^\s]+/)", mail.outbox[0].body
    )
    assert match
    set_password_page = client.get(match.group(1), follow=True)
    form_url = set_password_page.redirect_chain[-1][0]
    client.post(form_url, {"password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD})

    user.refresh_from_db()
    assert user.check_password(STRONG_PASSWORD)


def test_password_reset_for_an_unknown_address_reveals_nothing(client):
    response = client.post(reverse("account_reset_password"), {"email": "nobody@example.com"})

    assert response.status_code == 302
    assert User.objects.count() == 0


PUBLIC_URL = "https://console.example.com"


def links_in(message) -> list[str]:
    return re.findall(r"https?://\S+", message.body)


@pytest.mark.parametrize(
    ("action", "link_path"),
    [
        (lambda client: sign_up(client, "public@example.com"), "/accounts/confirm-email/"),
        (
            lambda client: client.post(
                reverse("account_reset_password"), {"email": "member@example.com"}
            ),
            "/accounts/password/reset/key/",
        ),
        (lambda client: sign_up(client, "member@example.com"), "/accounts/password/reset/"),
        (
            lambda client: client.post(
                reverse("account_reset_password"), {"email": "nobody@example.com"}
            ),
            "/accounts/signup/",
        ),
    ],
    ids=["verification", "password-reset", "already-exists", "unknown-account"],
)
def test_account_emails_link_to_the_public_url_not_the_request_host(
    client, settings, action, link_path
):
    # Given the site's public address, and a request that reached it under another host,
    settings.COMET_PUBLIC_URL = PUBLIC_URL + "/"
    UserFactory(email="member@example.com")
    mail.outbox.clear()

    # when an account email goes out,
    action(client)

    # then its links start with the public address, and the request's host appears nowhere.
    assert len(mail.outbox) == 1
    body = mail.outbox[0].body
    links = links_in(mail.outbox[0])
    assert any(link.startswith(PUBLIC_URL + link_path) for link in links), body
    assert all(link.startswith(PUBLIC_URL + "/") for link in links), body
    assert PUBLIC_URL + "//" not in body
    assert "testserver" not in body


@pytest.mark.django_db
def test_sign_up_can_be_closed_by_the_settings(client, settings):
    settings.COMET_SIGNUP_OPEN = False

    response = client.post(
        reverse("account_signup"),
        {
            "email": "closed@example.com",
            "password1": "a long passphrase 1",
            "password2": "a long passphrase 1",
        },
    )

    assert response.status_code == 200
    assert not get_user_model().objects.filter(email="closed@example.com").exists()
    assert (
        "closed" in response.content.decode().lower()
        or "not open" in response.content.decode().lower()
    )
