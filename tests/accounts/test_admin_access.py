import pytest
from allauth.mfa.models import Authenticator
from django.urls import reverse

from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_admin_login_goes_through_allauth(client):
    response = client.get(reverse("admin:login"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_customer_is_refused_the_admin(client):
    client.force_login(UserFactory())

    response = client.get(reverse("admin:index"))

    assert response.status_code in (302, 403)
    assert b"Site administration" not in response.content


def test_staff_without_mfa_reach_the_admin_when_not_required(client, settings):
    settings.COMET_REQUIRE_STAFF_MFA = False
    client.force_login(StaffFactory())

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200


def test_staff_without_mfa_are_sent_to_set_it_up(client, settings):
    settings.COMET_REQUIRE_STAFF_MFA = True
    client.force_login(StaffFactory())

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"] == reverse("mfa_index")


def test_staff_with_mfa_not_used_this_session_are_asked_for_a_code(client, settings):
    settings.COMET_REQUIRE_STAFF_MFA = True
    staff = StaffFactory()
    Authenticator.objects.create(user=staff, type=Authenticator.Type.TOTP, data={"secret": "x"})
    client.force_login(staff)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("mfa_reauthenticate"))


def test_staff_who_passed_mfa_reach_the_admin(client, settings):
    settings.COMET_REQUIRE_STAFF_MFA = True
    staff = StaffFactory()
    Authenticator.objects.create(user=staff, type=Authenticator.Type.TOTP, data={"secret": "x"})
    client.force_login(staff)
    session = client.session
    session["account_authentication_methods_user"] = str(staff.pk)
    session["account_authentication_methods"] = [{"method": "mfa", "type": "totp", "at": 0}]
    session.save()

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
