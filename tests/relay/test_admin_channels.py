"""The channel admin: served models and the mapping without JSON, a write-only API key,
and "Test this channel", which asks the upstream without charging or logging anything."""

import re
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from billing.models import Account, LedgerEntry, Reservation
from billing.services import account_credit
from logs.models import RequestLog
from models_catalog.models import CatalogModel, PricingGroup, Vendor
from models_catalog.services import catalog_entry_create
from relay.admin import ChannelForm
from relay.admin_fields import ModelMappingField, ModelMappingWidget, ServedModelsField
from relay.crypto import decrypt_secret
from relay.models import Channel
from relay.services import channel_create
from tests.factories import StaffFactory, UserFactory

from .conftest import MODEL, UPSTREAM_KEY

pytestmark = pytest.mark.django_db

SECRET = "sk-upstream-very-secret-value-9876"


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


@pytest.fixture
def priced_model(db):
    PricingGroup.objects.get_or_create(
        is_default=True, defaults={"name": "default", "display_name": "Default"}
    )
    vendor, _created = Vendor.objects.get_or_create(name="testvendor", display_name="Test vendor")
    model = CatalogModel(
        name=MODEL, vendor=vendor, model_ratio=Decimal("1.5"), completion_ratio=Decimal("2")
    )
    catalog_entry_create(entry=model)
    return model


def form_data(**overrides):
    data = {
        "name": "c",
        "kind": "openai",
        "base_url": "https://up.example/v1",
        "api_keys": "",
        "served_models": "m",
        "priority": 0,
        "weight": 1,
        "connect_timeout_seconds": 5,
        "read_timeout_seconds": 300,
        "status": "enabled",
    }
    data.update(overrides)
    return data


def errors_of(field, value):
    with pytest.raises(ValidationError) as caught:
        field.clean(value)
    return caught.value.messages


# --- Served models: one per line ------------------------------------------------------


def test_served_models_are_one_name_per_line_blank_lines_and_spaces_ignored():
    field = ServedModelsField(required=False)

    assert field.clean("gpt-4o\n\n  claude-3-5-haiku  \r\nmeta-llama/Llama-3-70b:free\n") == [
        "gpt-4o",
        "claude-3-5-haiku",
        "meta-llama/Llama-3-70b:free",
    ]
    assert field.clean("") == []
    assert field.prepare_value(["a", "b"]) == "a\nb"


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ('["m", "n"]', "one name per line, without spaces, quotes or commas"),
        ("gpt 4o", "“gpt 4o” is not a model name"),
        ("m\nn\nm", "“m” is listed twice."),
        ("x" * 129, "is longer than 128 characters"),
        ("a\x00b", "contains a NUL character"),
    ],
)
def test_a_wrong_served_model_says_which_and_why(typed, says):
    [message, *_] = errors_of(ServedModelsField(required=False), typed)
    assert says in message


# --- The model mapping: rows of requested → upstream ----------------------------------


def test_mapping_rows_become_a_mapping_and_empty_rows_are_ignored():
    field = ModelMappingField(required=False)

    assert field.clean([("gpt-4o", "gpt-4o-2024-08-06"), ("", ""), (" m ", " up ")]) == {
        "gpt-4o": "gpt-4o-2024-08-06",
        "m": "up",
    }
    assert field.clean([("", "")]) == {}


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([("gpt-4o", "")], "Row 1: give both the requested name and the name sent upstream."),
        ([("", ""), ("", "x")], "Row 2: give both"),
        ([("a", "x"), ("a", "y")], "Row 2: “a” is mapped twice."),
        ([("a", "x y")], "Row 1: “x y” is not a model name"),
    ],
)
def test_a_wrong_mapping_row_says_which_row_and_why(rows, says):
    [message, *_] = errors_of(ModelMappingField(required=False), rows)
    assert message.startswith(says)


def test_the_mapping_widget_reads_its_rows_and_shows_them_with_empty_ones_to_fill():
    from django.http import QueryDict

    widget = ModelMappingWidget()
    data = QueryDict(mutable=True)
    data.setlist("model_mapping-requested", ["a", "", "c"])
    data.setlist("model_mapping-upstream", ["x", "", "z"])

    assert widget.value_from_datadict(data, {}, "model_mapping") == [
        ("a", "x"),
        ("", ""),
        ("c", "z"),
    ]
    assert widget.value_omitted_from_data(QueryDict(), {}, "model_mapping")
    html = widget.render("model_mapping", {"a": "x"})
    assert html.count('name="model_mapping-requested"') == 4
    assert 'value="a"' in html
    assert 'value="x"' in html


def test_the_form_refuses_a_mapping_of_a_model_the_channel_does_not_serve():
    data = form_data(api_keys="sk-new")
    data["model_mapping-requested"] = ["n"]
    data["model_mapping-upstream"] = ["n-upstream"]

    form = ChannelForm(data)

    assert not form.is_valid()
    assert form.errors["model_mapping"] == [
        "Not among the served models: n. Add them to the served models, or remove their rows."
    ]


def test_a_new_channel_other_than_mock_needs_an_api_key():
    assert "api_keys" in ChannelForm(form_data()).errors
    assert ChannelForm(form_data(kind="mock", base_url="")).is_valid()


def test_the_admin_saves_the_served_models_and_the_mapping_without_json(staff_client, priced_model):
    data = form_data(name="rows", api_keys=SECRET, served_models=f"{MODEL}\nnot-in-catalog")
    data["model_mapping-requested"] = [MODEL, ""]
    data["model_mapping-upstream"] = ["gpt-upstream", ""]

    response = staff_client.post(reverse("admin:relay_channel_add"), data, follow=True)

    channel = Channel.objects.get(name="rows")
    assert channel.served_models == [MODEL, "not-in-catalog"]
    assert channel.model_mapping == {MODEL: "gpt-upstream"}
    assert decrypt_secret(channel.encrypted_api_key) == SECRET
    shown = [str(message) for message in response.context["messages"]]
    assert "Not in the catalog, so not callable until added there: not-in-catalog." in shown
    page = staff_client.get(reverse("admin:relay_channel_change", args=[channel.pk]))
    html = page.content.decode()
    assert f"{MODEL}\nnot-in-catalog</textarea>" in html
    assert 'value="gpt-upstream"' in html
    assert "[&quot;" not in html
    assert "{&quot;" not in html


def test_the_api_keys_are_one_empty_box_naming_only_their_last_characters(staff_client):
    channel = channel_create(
        name="c",
        kind="openai",
        base_url="https://up.example/v1",
        api_keys=[SECRET, "sk-second-secret-value-1234"],
        served_models=["m"],
    )

    page = staff_client.get(reverse("admin:relay_channel_change", args=[channel.pk])).content
    html = page.decode()

    assert SECRET not in html
    assert "sk-second-secret-value-1234" not in html
    assert re.search(r'<textarea name="api_keys"[^>]*autocomplete="off"[^>]*>\s*</textarea>', html)
    assert "2 keys, ending …9876, …1234, stored encrypted and never shown." in html
    listing = staff_client.get(reverse("admin:relay_channel_changelist")).content.decode()
    assert "…9876, …1234" in listing
    assert SECRET not in listing


# --- Test this channel ------------------------------------------------------------------


@pytest.fixture
def funded_account(db):
    user = UserFactory()
    account_credit(user_id=user.pk, amount=10_000_000, idempotency_key=f"test:{user.pk}")
    return Account.objects.get(pk=user.pk)


def books():
    return (
        list(Account.objects.values_list("pk", "balance", "reserved", "used", "request_count")),
        LedgerEntry.objects.count(),
        Reservation.objects.count(),
        RequestLog.objects.count(),
    )


def make_channel(name, base_url, **options):
    options.setdefault("served_models", [MODEL])
    return channel_create(
        name=name,
        kind=options.pop("kind", "openai"),
        base_url=base_url,
        api_key=UPSTREAM_KEY,
        **options,
    )


def shown_messages(response):
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def test_testing_a_channel_reports_its_latency_and_charges_and_logs_nothing(
    staff_client, fake_upstream, priced_model, funded_account
):
    channel = make_channel(
        "fake", f"{fake_upstream.url}/delay-50/v1", model_mapping={MODEL: "upstream-name"}
    )
    before = books()

    response = staff_client.post(reverse("admin:relay_channel_test", args=[channel.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:relay_channel_change", args=[channel.pk])
    [(level, text)] = shown_messages(response)
    assert level == "success"
    assert text.startswith(f"fake answered {MODEL} (sent upstream as upstream-name) in ")
    milliseconds = int(text.rsplit(" in ", 1)[1].removesuffix(" ms."))
    assert milliseconds >= 50
    assert fake_upstream.app.stats.requests == 1
    assert fake_upstream.app.stats.last_model == "upstream-name"
    assert fake_upstream.app.stats.last_authorization == f"Bearer {UPSTREAM_KEY}"
    assert books() == before
    channel.refresh_from_db()
    assert (channel.consecutive_failures, channel.total_failures) == (0, 0)


@pytest.mark.parametrize(
    ("scenario", "says"),
    [
        ("status-500", "HTTP 500"),
        ("status-401", "HTTP 401, the upstream refused the API key"),
        ("status-400", "HTTP 400: fake 400"),
    ],
)
def test_a_failing_channel_shows_the_error_and_its_counts_stay(
    staff_client, fake_upstream, priced_model, funded_account, scenario, says
):
    channel = make_channel("broken", f"{fake_upstream.url}/{scenario}/v1")
    before = books()

    response = staff_client.post(reverse("admin:relay_channel_test", args=[channel.pk]))

    [(level, text)] = shown_messages(response)
    assert level == "error"
    assert text.startswith(f"broken failed for {MODEL} after ")
    assert text.endswith(f" ms: {says}")
    assert books() == before
    channel.refresh_from_db()
    assert (channel.status, channel.consecutive_failures, channel.last_error) == ("enabled", 0, "")


def test_an_unreachable_channel_shows_a_connection_error(staff_client, priced_model):
    from .conftest import free_port

    channel = make_channel("nowhere", f"http://127.0.0.1:{free_port()}/v1")

    response = staff_client.post(reverse("admin:relay_channel_test", args=[channel.pk]))

    [(level, text)] = shown_messages(response)
    assert level == "error"
    assert "connection: " in text


def test_the_admin_action_tests_each_selected_channel(staff_client, fake_upstream, priced_model):
    good = make_channel("good", f"{fake_upstream.url}/v1")
    bad = make_channel("bad", f"{fake_upstream.url}/status-503/v1")
    mock = channel_create(name="mock", kind="mock", served_models=[MODEL])
    empty = channel_create(name="empty", kind="mock", served_models=[])

    response = staff_client.post(
        reverse("admin:relay_channel_changelist"),
        {"action": "test_channels", "_selected_action": [good.pk, bad.pk, mock.pk, empty.pk]},
    )

    assert response.status_code == 302
    shown = {text.split(" ", 1)[0]: (level, text) for level, text in shown_messages(response)}
    assert shown["good"][0] == "success"
    assert shown["bad"][0] == "error"
    assert shown["bad"][1].endswith("HTTP 503")
    assert shown["mock"][0] == "success"
    assert shown["empty:"] == ("error", "empty: The channel serves no model to ask.")


def test_testing_needs_a_post_and_the_change_permission(client, fake_upstream, priced_model):
    channel = make_channel("fake", f"{fake_upstream.url}/v1")
    url = reverse("admin:relay_channel_test", args=[channel.pk])
    client.force_login(StaffFactory())
    assert client.get(url).status_code == 405

    client.force_login(StaffFactory(is_superuser=False))
    assert client.post(url).status_code == 403
    assert fake_upstream.app.stats.requests == 0


def test_the_change_form_has_a_test_button(staff_client):
    channel = channel_create(name="mock", kind="mock", served_models=["m"])

    page = staff_client.get(reverse("admin:relay_channel_change", args=[channel.pk])).content

    assert reverse("admin:relay_channel_test", args=[channel.pk]).encode() in page
    assert b"Test this channel" in page


def test_the_channel_list_shows_each_channels_error_rate(staff_client):
    from logs.rollups import channel_attempt_record

    flaky = channel_create(name="flaky", kind="mock", served_models=[MODEL])
    steady = channel_create(name="steady", kind="mock", served_models=[MODEL])
    for failed in (True, False, False, False):
        channel_attempt_record(channel_id=flaky.pk, failed=failed)
    channel_attempt_record(channel_id=steady.pk, failed=False)
    channel_attempt_record(channel_id=987_654, failed=True)

    response = staff_client.get(reverse("admin:relay_channel_changelist"))

    assert response.status_code == 200
    rates = {
        rate.name: (rate.requests, rate.failures) for rate in response.context["channel_rates"]
    }
    assert rates == {"flaky": (4, 1), "steady": (1, 0), "Deleted channel #987654": (1, 1)}
    worst = response.context["channel_rates"][0]
    assert worst.name == "Deleted channel #987654"
    assert 'id="channel-error-rates"' in response.content.decode()


# --- Several keys ---------------------------------------------------------------------


def test_keys_are_one_per_line_blank_lines_and_spaces_ignored():
    from relay.admin_fields import ApiKeysField

    field = ApiKeysField(required=False)

    assert field.clean("  sk-one \n\n\r\nsk-two\n") == ["sk-one", "sk-two"]
    assert field.clean("") == []


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("sk-one\nsk-two\nsk-one", "Line 3 repeats an earlier key."),
        ("sk-one\nsk two", "Line 2 is not an API key"),
        ("sk-\x00one", "Line 1 is not an API key"),
        ("sk-clé", "Line 1 is not an API key"),
        ("x" * 1001, "Line 1 is longer than 1000 characters."),
        ("\n".join(f"sk-{n}" for n in range(101)), "At most 100 keys."),
    ],
)
def test_a_wrong_key_says_which_line_and_never_repeats_the_key(typed, says):
    from relay.admin_fields import ApiKeysField

    [message, *_] = errors_of(ApiKeysField(required=False), typed)

    assert message.startswith(says)
    assert "sk-one" not in message
    assert "clé" not in message


def test_the_admin_replaces_every_key_with_those_typed_and_keeps_them_when_left_empty(
    staff_client,
):
    channel = channel_create(
        name="c",
        kind="openai",
        base_url="https://up.example/v1",
        api_key=SECRET,
        served_models=["m"],
    )
    url = reverse("admin:relay_channel_change", args=[channel.pk])

    response = staff_client.post(url, form_data(api_keys="sk-new-one-1111\nsk-new-two-2222\n"))

    assert response.status_code == 302
    channel.refresh_from_db()
    assert decrypt_secret(channel.encrypted_api_key) == "sk-new-one-1111\nsk-new-two-2222"
    assert channel.api_key_endings == ["1111", "2222"]
    response = staff_client.post(url, form_data(api_keys="", served_models="m\nn"))
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.api_key_endings == ["1111", "2222"]
    assert channel.served_models == ["m", "n"]


def test_a_form_error_never_shows_the_typed_keys_again(staff_client):
    response = staff_client.post(
        reverse("admin:relay_channel_add"),
        form_data(api_keys=f"{SECRET}\nsk-other-secret-0000", weight=0),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    html = response.content.decode()
    assert SECRET not in html
    assert "sk-other-secret-0000" not in html


def test_testing_a_channel_names_the_keys_refused_before_one_answered(
    staff_client, fake_upstream, priced_model
):
    fake_upstream.app.key_answers["sk-revoked-key-0001"] = (401, {})
    channel = channel_create(
        name="keys",
        kind="openai",
        base_url=f"{fake_upstream.url}/v1",
        api_keys=["sk-revoked-key-0001", "sk-working-key-0002"],
        served_models=[MODEL],
    )

    response = staff_client.post(reverse("admin:relay_channel_test", args=[channel.pk]))

    [(level, text)] = shown_messages(response)
    assert level == "success"
    assert text.startswith(f"keys answered {MODEL} in ")
    assert text.endswith(" ms. Keys refused first: …0001 (HTTP 401).")
    assert "sk-revoked" not in text
