import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_ensure_admin_creates_a_verified_superuser_once(capsys):
    call_command("ensure_admin", email="boss@example.com")
    first_output = capsys.readouterr().out
    call_command("ensure_admin", email="boss@example.com")
    second_output = capsys.readouterr().out

    user = get_user_model().objects.get()
    assert user.is_superuser
    assert user.is_staff
    assert EmailAddress.objects.get(user=user).verified
    password = first_output.split("password:")[1].split()[0]
    assert user.check_password(password)
    assert second_output == ""


def test_profile_shows_sign_in_settings(user_client, user):
    response = user_client.get("/profile/")

    assert response.status_code == 200
    assert user.email.encode() in response.content
    assert b"Two-factor authentication" in response.content
