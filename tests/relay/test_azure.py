"""Azure OpenAI channels: the deployment's URL, `api-version` and `api-key`, with the openai
SDK against the relay and a fake Azure resource (`fake_azure`) behind it."""

import anthropic
import openai
import pytest

from billing.models import Account
from models_catalog.models import CatalogModel, Vendor
from models_catalog.services import catalog_entry_create
from relay.admin import ChannelForm, azure_api_version_problem
from relay.probe import channel_test
from tests.fake_upstream import ServerThread

from .conftest import MODEL, make_channel, wait_for_logs
from .fake_azure import API_VERSION, AZURE_KEY, DEPLOYMENT, FakeAzure

pytestmark = pytest.mark.django_db(transaction=True)

# The test catalog's MODEL: a model ratio of 1.5 is 3 micro-USD a token; output costs twice that.
MICRO_USD_PER_INPUT_TOKEN = 3
COMPLETION_RATIO = 2


def cost_of(prompt: int, completion: int) -> int:
    return (prompt + completion * COMPLETION_RATIO) * MICRO_USD_PER_INPUT_TOKEN


@pytest.fixture(scope="session")
def azure_server():
    app = FakeAzure()
    server = ServerThread(app).start()
    server.app = app
    yield server
    server.stop()


@pytest.fixture
def fake(azure_server):
    azure_server.app.seen.clear()
    return azure_server


@pytest.fixture
def azure_channel(fake, catalog_model):
    return make_channel(
        "azure",
        f"{fake.url}/openai",
        kind="azure",
        api_key=AZURE_KEY,
        api_version=API_VERSION,
        model_mapping={MODEL: DEPLOYMENT},
    )


@pytest.fixture
def client(relay_url, token_key, azure_channel):
    return openai.OpenAI(base_url=relay_url, api_key=token_key, max_retries=0)


def balance_of(user) -> int:
    return Account.objects.get(pk=user.pk).balance


def test_a_chat_completion_goes_to_the_deployment_with_its_version_and_key(
    client, fake, funded_user
):
    before = balance_of(funded_user)

    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}]
    )

    [seen] = fake.app.seen
    assert seen["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert seen["query"] == {"api-version": [API_VERSION]}
    assert seen["headers"]["api-key"] == AZURE_KEY
    assert "authorization" not in seen["headers"]
    assert answer.choices[0].message.content == "Hello from Azure"
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.completion_tokens, log.usage_estimated) == (13, 5, False)
    assert log.cost == cost_of(13, 5)
    assert balance_of(funded_user) == before - cost_of(13, 5)


@pytest.mark.parametrize("include_usage", [False, True])
def test_an_azure_stream_reaches_the_sdk_intact_and_is_billed(
    client, fake, funded_user, include_usage
):
    before = balance_of(funded_user)

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        **({"stream_options": {"include_usage": True}} if include_usage else {}),
    )
    chunks = list(stream)

    # The relay asked for usage either way (it bills by it).
    assert fake.app.seen[0]["body"]["stream_options"] == {"include_usage": True}
    # Azure's first chunk, of the prompt's content filter results, is the client's.
    assert chunks[0].choices == []
    assert chunks[0].model_extra["prompt_filter_results"][0]["prompt_index"] == 0
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "Hello from Azure"
    has_usage_chunk = chunks[-1].choices == [] and chunks[-1].usage is not None
    assert has_usage_chunk is include_usage
    [log] = wait_for_logs(1)
    assert (log.prompt_tokens, log.completion_tokens, log.usage_estimated) == (13, 5, False)
    assert balance_of(funded_user) == before - cost_of(13, 5)


def test_embeddings_and_completions_go_to_the_deployment(client, fake, funded_user):
    before = balance_of(funded_user)

    embedding = client.embeddings.create(model=MODEL, input="Hi")
    completion = client.completions.create(model=MODEL, prompt="Say hi", max_tokens=5)

    assert [seen["path"] for seen in fake.app.seen] == [
        f"/openai/deployments/{DEPLOYMENT}/embeddings",
        f"/openai/deployments/{DEPLOYMENT}/completions",
    ]
    assert embedding.data[0].embedding == [0.1, 0.2, 0.3]
    assert completion.choices[0].text == "Hi"
    logs = wait_for_logs(2)
    assert [log.cost for log in logs] == [cost_of(4, 0), cost_of(13, 5)]
    assert balance_of(funded_user) == before - cost_of(4, 0) - cost_of(13, 5)


def test_messages_are_translated_to_the_deployments_chat(relay_url, token_key, azure_channel, fake):
    client = anthropic.Anthropic(base_url=relay_url[: -len("/v1")], api_key=token_key)

    message = client.messages.create(
        model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
    )

    [seen] = fake.app.seen
    assert seen["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    assert seen["body"]["messages"] == [{"role": "user", "content": "Hi"}]
    assert message.content[0].text == "Hello from Azure"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (13, 5)


def test_the_probe_of_an_azure_channel_sends_a_chat_completion(fake, azure_channel):
    result = channel_test(azure_channel)

    assert result.ok, result.error
    assert result.upstream_model == DEPLOYMENT
    [seen] = fake.app.seen
    assert seen["path"] == f"/openai/deployments/{DEPLOYMENT}/chat/completions"


def test_a_wrong_api_version_is_the_upstreams_refusal_passed_back(
    relay_url, token_key, fake, catalog_model
):
    make_channel(
        "azure-old",
        f"{fake.url}/openai",
        kind="azure",
        api_key=AZURE_KEY,
        api_version="2023-01-01",
        model_mapping={MODEL: DEPLOYMENT},
    )
    client = openai.OpenAI(base_url=relay_url, api_key=token_key, max_retries=0)

    with pytest.raises(openai.BadRequestError, match="api-version"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])


def test_the_admin_form_requires_the_api_version_of_an_azure_channel():
    data = {
        "name": "az",
        "kind": "azure",
        "base_url": "https://res.openai.azure.com/openai",
        "api_version": "",
        "api_keys": "key-1",
        "served_models": "m",
        "priority": 0,
        "weight": 1,
        "connect_timeout_seconds": 5,
        "read_timeout_seconds": 300,
        "status": "enabled",
        "header_overrides": "{}",
        "parameter_overrides": "{}",
    }

    form = ChannelForm(data=data)

    assert not form.is_valid()
    assert "Enter the API version" in form.errors["api_version"][0]
    versioned = ChannelForm(data={**data, "api_version": API_VERSION})
    assert versioned.is_valid(), versioned.errors


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        ("2024-06-01", "2024-10-21 or later"),
        ("2024-08-01-preview", "2024-10-21 or later"),
        ("latest", "looks like"),
        ("\uff12\uff10\uff12\uff14-10-21", "looks like"),  # fullwidth digits
        ("2024-10-21\n", "looks like"),
        ("2024-10-21", ""),
        ("2024-09-01-preview", ""),
        ("2025-04-01-preview", ""),
    ],
)
def test_an_azure_api_version_must_send_stream_usage(version, problem):
    """Versions before 2024-09-01 refuse `stream_options`, which streamed calls are billed by."""
    if problem:
        assert problem in azure_api_version_problem(version)
    else:
        assert azure_api_version_problem(version) == ""


def test_an_image_is_generated_at_the_deployment_and_billed_per_image(
    relay_url, token_key, fake, catalog_model, funded_user, return_grants
):
    vendor = Vendor.objects.get(name="testvendor")
    catalog_entry_create(
        entry=CatalogModel(
            name="dalle-test", vendor=vendor, kind="image", price_per_image={"*": 40_000}
        )
    )
    make_channel(
        "azure-images",
        f"{fake.url}/openai",
        kind="azure",
        api_key=AZURE_KEY,
        api_version=API_VERSION,
        served_models=["dalle-test"],
        model_mapping={"dalle-test": DEPLOYMENT},
    )
    before = balance_of(funded_user)
    client = openai.OpenAI(base_url=relay_url, api_key=token_key, max_retries=0)

    answer = client.images.generate(model="dalle-test", prompt="a cat")

    [seen] = fake.app.seen
    assert seen["path"] == f"/openai/deployments/{DEPLOYMENT}/images/generations"
    assert seen["query"] == {"api-version": [API_VERSION]}
    assert seen["headers"]["api-key"] == AZURE_KEY
    assert "authorization" not in seen["headers"]
    assert answer.data[0].b64_json == "aGk="
    [log] = wait_for_logs(1)
    assert (log.unit, log.unit_count, log.cost) == ("image", 1, 40_000)
    return_grants()
    assert balance_of(funded_user) == before - 40_000
