"""A channel's header and parameter overrides: checked in the admin form (hostile JSON
is a form error, never a 500), and sent upstream by the relay (never a key's header)."""

import json

import httpx
import pytest
from django.urls import reverse

from relay.admin import ChannelForm
from relay.models import Channel
from relay.overrides import (
    MAX_OVERRIDES_CHARS,
    headers_to_send,
    parameter_overrides_problems,
    parameters_apply,
)
from relay.routing import routing_table_expire
from relay.services import channel_create
from tests.factories import StaffFactory

from .conftest import MODEL, UPSTREAM_KEY, make_channel, wait_for_logs

SECRET = "sk-upstream-very-secret-value-9876"


def form_data(**overrides):
    data = {
        "name": "c",
        "kind": "openai",
        "base_url": "https://up.example/v1",
        "api_keys": SECRET,
        "served_models": "m",
        "priority": 0,
        "weight": 1,
        "connect_timeout_seconds": 5,
        "read_timeout_seconds": 300,
        "status": "enabled",
        "header_overrides": "",
        "parameter_overrides": "",
    }
    data.update(overrides)
    return data


# --- The form -------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_form_keeps_headers_and_parameters_as_json_objects():
    form = ChannelForm(
        form_data(
            header_overrides='{"OpenAI-Organization": "org-1", "X-Priority": 3, "X-Beta": true}',
            parameter_overrides=(
                '{"max_tokens": 4096, "user": null,'
                ' "safety_settings": [{"category": "HARM", "threshold": "BLOCK_NONE"}]}'
            ),
        )
    )

    assert form.is_valid(), form.errors
    assert form.cleaned_data["header_overrides"] == {
        "OpenAI-Organization": "org-1",
        "X-Priority": 3,
        "X-Beta": True,
    }
    assert form.cleaned_data["parameter_overrides"]["safety_settings"][0]["threshold"] == (
        "BLOCK_NONE"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["Authorization", "authorization", "api-key", "Host", "Content-Length", "X-Api-Key"]
)
def test_a_header_the_relay_sets_itself_is_refused(name):
    form = ChannelForm(form_data(header_overrides=json.dumps({name: "x"})))

    assert not form.is_valid()
    assert form.errors["header_overrides"] == [
        f"“{name}” is set by the relay itself (the channel's key, or how the request is "
        "sent) and cannot be overridden."
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["model", "stream", "stream_options"])
def test_a_parameter_the_relay_sets_itself_is_refused(name):
    form = ChannelForm(form_data(parameter_overrides=json.dumps({name: "x"})))

    assert not form.is_valid()
    assert form.errors["parameter_overrides"][0].startswith(f"“{name}” is set by the relay itself")


HOSTILE = {
    "not json": "{max_tokens: 1}",
    "a list": "[1, 2]",
    "a string": '"max_tokens"',
    "a number": "1",
    "null": "null",
    "huge": '{"a": "' + "x" * 200_000 + '"}',
    "just too long": '{"a": "' + "x" * (MAX_OVERRIDES_CHARS - 8) + '"}',
    "deep for the parser": "[" * 2000 + "]" * 2000,
    "deep object": '{"a": ' * 300 + "1" + "}" * 300,
    "six levels": '{"a": [[[[{"b": 1}]]]]}',
    "NaN": '{"a": NaN}',
    "Infinity": '{"a": -Infinity}',
    "overflowing float": '{"a": 1e999}',
    "NUL": '{"a": "x\\u0000y"}',
    "lone surrogate": '{"a": "\\ud800"}',
    "NUL in a name": '{"a\\u0000": 1}',
    "empty name": '{"": 1}',
    "too many": json.dumps({f"p{number}": number for number in range(31)}),
}


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["header_overrides", "parameter_overrides"])
@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_json_is_a_form_error(field, text):
    form = ChannelForm(form_data(**{field: text}))

    assert not form.is_valid()
    assert form.errors[field]


HOSTILE_HEADERS = {
    "line break": '{"X-A": "v\\r\\nX-Evil: 1"}',
    "non-ASCII value": '{"X-A": "é"}',
    "object value": '{"X-A": {"b": 1}}',
    "null value": '{"X-A": null}',
    "space in the name": '{"X A": "v"}',
    "colon in the name": '{"X-A:": "v"}',
    "twice": '{"X-A": "1", "x-a": "2"}',
    "long value": json.dumps({"X-A": "v" * 1025}),
}


@pytest.mark.django_db
@pytest.mark.parametrize("text", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
def test_a_header_that_cannot_be_sent_is_a_form_error(text):
    form = ChannelForm(form_data(header_overrides=text))

    assert not form.is_valid()
    assert form.errors["header_overrides"]


@pytest.mark.django_db
def test_hostile_overrides_posted_to_the_admin_are_errors_on_the_page_and_change_nothing(client):
    client.force_login(StaffFactory())
    channel = channel_create(
        name="c",
        kind="openai",
        base_url="https://up.example/v1",
        api_key=SECRET,
        served_models=["m"],
        header_overrides={"X-Team": "a"},
    )
    url = reverse("admin:relay_channel_change", args=[channel.pk])

    for field, text in [
        ("header_overrides", '{"Authorization": "Bearer mine"}'),
        ("header_overrides", "[" * 100_000),
        ("parameter_overrides", "[" * 3000 + "]" * 3000),
        ("parameter_overrides", '{"a": NaN}'),
        ("parameter_overrides", '"just text"'),
    ]:
        response = client.post(url, form_data(**{field: text, "api_keys": ""}))

        assert response.status_code == 200
        assert response.context["adminform"].form.errors[field]
    channel.refresh_from_db()
    assert channel.header_overrides == {"X-Team": "a"}
    assert channel.parameter_overrides == {}
    page = client.get(url).content.decode()
    assert "&quot;X-Team&quot;: &quot;a&quot;" in page


@pytest.mark.django_db
def test_the_model_refuses_forbidden_overrides_written_by_a_service():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        channel_create(
            name="c",
            kind="mock",
            served_models=["m"],
            header_overrides={"Authorization": "Bearer x"},
        )
    with pytest.raises(ValidationError):
        channel_create(name="c", kind="mock", served_models=["m"], parameter_overrides={"model": 1})


def test_merging_replaces_the_clients_value_and_null_removes_it():
    overrides = (("max_tokens", 10), ("user", None), ("extra", {"a": [1]}))
    payload = {"model": "m", "max_tokens": 500, "user": "u1"}

    merged = parameters_apply(payload, overrides)
    merged["extra"]["a"].append(2)

    assert merged == {"model": "m", "max_tokens": 10, "extra": {"a": [1, 2]}}
    assert payload == {"model": "m", "max_tokens": 500, "user": "u1"}
    assert overrides[2][1] == {"a": [1]}  # the channel's value is not shared with a request
    assert parameter_overrides_problems({"extra": {"a": [1]}}) == []


def test_forbidden_headers_stored_some_other_way_are_never_sent():
    stored = {
        "Authorization": "Bearer evil",
        "HOST": "evil.example",
        "X-Good": "yes",
        "X-Bad": "a\r\nb",
        "X Bad": "c",
        "X-Flag": False,
    }

    assert headers_to_send(stored) == (("x-good", "yes"), ("x-flag", "false"))
    assert headers_to_send(["not", "an", "object"]) == ()


# --- Through the relay ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_overrides_reach_the_upstream_and_billing_uses_its_usage(
    relay_url, token_key, catalog_model, fake_upstream
):
    # Given a channel with headers and parameters of its own
    make_channel(
        "overridden",
        f"{fake_upstream.url}/v1",
        header_overrides={"OpenAI-Organization": "org-1", "X-Retries": 0},
        parameter_overrides={
            "max_tokens": 7,
            "user": None,
            "safety_settings": [{"category": "HARM", "threshold": "BLOCK_NONE"}],
        },
    )

    # When a client asks with its own max_tokens and user
    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 300,
            "user": "customer-7",
        },
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    )

    # Then the upstream got the channel's values, the channel's key and the mapping's model
    assert response.status_code == 200
    stats = fake_upstream.app.stats
    assert stats.last_parameters == {
        "model": MODEL,
        "max_tokens": 7,
        "safety_settings": [{"category": "HARM", "threshold": "BLOCK_NONE"}],
    }
    assert stats.last_headers["openai-organization"] == "org-1"
    assert stats.last_headers["x-retries"] == "0"
    assert stats.last_headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    # And the request is charged for the usage the upstream reported
    [log] = wait_for_logs(1)
    usage = response.json()["usage"]
    assert (log.prompt_tokens, log.completion_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert log.usage_estimated is False
    assert log.cost > 0


@pytest.mark.django_db(transaction=True)
def test_a_stream_keeps_its_usage_whatever_the_overrides(
    relay_url, token_key, catalog_model, fake_upstream
):
    make_channel("overridden", f"{fake_upstream.url}/v1", parameter_overrides={"max_tokens": 5})

    with httpx.stream(
        "POST",
        f"{relay_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    ) as response:
        b"".join(response.iter_raw())

    assert response.status_code == 200
    assert fake_upstream.app.stats.last_parameters["stream_options"] == {"include_usage": True}
    assert fake_upstream.app.stats.last_parameters["max_tokens"] == 5
    [log] = wait_for_logs(1)
    assert log.usage_estimated is False


@pytest.mark.django_db(transaction=True)
def test_embeddings_get_the_headers_but_not_the_generation_parameters(
    relay_url, token_key, catalog_model, fake_upstream
):
    make_channel(
        "overridden",
        f"{fake_upstream.url}/v1",
        header_overrides={"X-Team": "a"},
        parameter_overrides={"max_tokens": 5},
    )

    response = httpx.post(
        f"{relay_url}/embeddings",
        json={"model": MODEL, "input": "hi"},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    )

    assert response.status_code == 200
    assert fake_upstream.app.stats.last_parameters == {"model": MODEL}
    assert fake_upstream.app.stats.last_headers["x-team"] == "a"


@pytest.mark.django_db(transaction=True)
def test_a_forbidden_header_written_to_the_row_is_not_sent(
    relay_url, token_key, catalog_model, fake_upstream
):
    # Given a row changed past the admin and the model's validation
    channel = make_channel("c", f"{fake_upstream.url}/v1")
    Channel.objects.filter(pk=channel.pk).update(
        header_overrides={"Authorization": "Bearer stolen", "X-Api-Key": "stolen", "X-Ok": "1"}
    )
    routing_table_expire()

    response = httpx.post(
        f"{relay_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {token_key}"},
        timeout=30,
    )

    assert response.status_code == 200
    headers = fake_upstream.app.stats.last_headers
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-api-key" not in headers
    assert headers["x-ok"] == "1"


@pytest.mark.django_db
def test_overrides_up_to_the_size_limit_are_kept():
    text = '{"a": "' + "x" * (MAX_OVERRIDES_CHARS - 9) + '"}'
    assert len(text) == MAX_OVERRIDES_CHARS

    form = ChannelForm(form_data(parameter_overrides=text))

    assert form.is_valid(), form.errors
