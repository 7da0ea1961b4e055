"""Hypothesis throws arbitrary requests at every relay route; the books must still close.

Bodies (request-shaped with wrong types, any JSON value, bytes that are not JSON,
nesting at and past the depth limit, huge numbers, NUL and lone surrogates in
strings), headers (keys in every place and shape, Content-Type, Accept,
anthropic-version, X-Forwarded-For, a Content-Length that lies, chunked bodies),
query strings, methods and paths under /v1/ go to the relay served on loopback, in
front of the fake upstream (OpenAI and Anthropic channels) and the mock channel.

For every example: never a 5xx (only the documented 503 "billing_unavailable" would
be allowed); every error is in the route's error format with a message for a
person; a refusal charges nothing, holds nothing and writes no log row; an answer
has one log row under its X-Request-ID and is charged exactly that row's cost, on
the account and on the token. After the run `reconcile` finds no drift.
"""

import json
import os
import socket
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import httpx
import hypothesis
import pytest
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from accounts.models import Token
from billing.models import Account
from logs.models import RequestLog
from models_catalog.models import CatalogModel, Vendor
from models_catalog.services import catalog_entry_create
from tokens.services import token_create, token_set_enabled

from .conftest import MODEL, make_channel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# RELAY_FUZZ_EXAMPLES=2000 runs a longer search, with a new random seed each run.
EXAMPLES = int(os.environ.get("RELAY_FUZZ_EXAMPLES", "200"))

CALL_PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"]
KNOWN_PATHS = [*CALL_PATHS, "/v1/models"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"]
# MODEL goes to an OpenAI channel (translated for /v1/messages), MOCK_MODEL to the mock
# channel, CLAUDE_MODEL to an Anthropic channel (an OpenAI one for the other routes),
# PER_CALL_MODEL (priced per call) to the mock channel; the catalog has no others.
MOCK_MODEL = "mock-test"
CLAUDE_MODEL = "claude-test"
PER_CALL_MODEL = "per-call-test"
MODELS = [MODEL, MOCK_MODEL, CLAUDE_MODEL, PER_CALL_MODEL]
# Headers the transport itself writes (a lying Content-Length is sent on a raw socket).
TRANSPORT_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
}
# The only 5xx the relay may answer for a request it could not serve: usage cannot be
# written right now (billing.grants), documented as "retry in a few seconds".
BILLING_UNAVAILABLE = "Usage cannot be recorded right now"


# --- strategies ----------------------------------------------------------------------


def mostly(usual: st.SearchStrategy, *unusual: st.SearchStrategy) -> st.SearchStrategy:
    """Draw from `usual` about four times in five: most requests get far enough to be served."""
    return st.integers(0, 4).flatmap(lambda roll: st.one_of(*unusual) if roll == 4 else usual)


# Any code point, lone surrogates included, and the ones databases and parsers trip on.
texts = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(["", "\x00", "\ud800", "\udfff", "a\x00b", "\ufeff", "é" * 3, "1e999"]),
)
odd_numbers = st.one_of(
    st.integers(min_value=-3, max_value=60),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**30, 2**63, 2**63 - 1, 2**31, 1_000_000, 1_000_001, 0, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(["10", "1e3", " 5", "٣"]),
)
json_scalars = st.one_of(st.none(), st.booleans(), odd_numbers, texts)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(texts, children, max_size=3)
    ),
    max_leaves=6,
)
model_names = mostly(
    st.sampled_from(MODELS),
    st.sampled_from(
        ["no-such-model", "", "GPT-TEST", f"{MODEL} ", f"{MODEL}\x00", "\ud800", f"{MODEL}\udfff"]
    ),
    json_values,
)
token_limits = mostly(st.integers(min_value=1, max_value=40), odd_numbers, json_values)
text_blocks = st.fixed_dictionaries(
    {"type": st.just("text"), "text": mostly(st.text(max_size=20), texts, json_values)}
)
content_blocks = st.one_of(
    text_blocks,
    st.fixed_dictionaries(
        {
            "type": st.just("image"),
            "source": st.one_of(
                st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(["base64", "url"]),
                        "media_type": json_values,
                        "data": json_values,
                        "url": json_values,
                    }
                ),
                json_values,
            ),
        }
    ),
    json_values,
)
contents = mostly(st.text(max_size=20), texts, st.lists(content_blocks, max_size=3), json_values)
messages = mostly(
    st.lists(
        mostly(
            st.fixed_dictionaries(
                {
                    "role": mostly(st.sampled_from(["user", "assistant", "system"]), json_values),
                    "content": contents,
                }
            ),
            json_values,
        ),
        max_size=3,
    ),
    json_values,
)
request_bodies = st.fixed_dictionaries(
    {"model": model_names},
    optional={
        "messages": messages,
        "prompt": st.one_of(texts, json_values),
        "input": st.one_of(texts, st.lists(texts, max_size=3), json_values),
        "system": st.one_of(texts, st.lists(content_blocks, max_size=2), json_values),
        "max_tokens": token_limits,
        "max_completion_tokens": token_limits,
        "n": odd_numbers,
        "best_of": odd_numbers,
        "stream": mostly(st.booleans(), json_values),
        "stream_options": st.one_of(
            st.fixed_dictionaries({"include_usage": json_values}), json_values
        ),
        "temperature": odd_numbers,
        "top_p": odd_numbers,
        "stop": json_values,
        "stop_sequences": json_values,
        "encoding_format": st.one_of(st.sampled_from(["float", "base64"]), json_values),
        "tools": json_values,
        "user": json_values,
    },
)


def _nested(depth: int) -> bytes:
    messages_value = "[" * depth + "]" * depth
    return f'{{"model": "{MODEL}", "messages": {messages_value}}}'.encode()


raw_bodies = st.one_of(
    st.binary(max_size=60),
    st.sampled_from(
        [
            b"",
            b"{",
            b"{not json",
            b"null",
            b"[]",
            b'"chat"',
            b"\xff\xfe{}",
            b"[" * 100_000,
            _nested(126),
            _nested(127),
            _nested(128),
            _nested(129),
            b'{"model": "' + MODEL.encode() + b'", "max_tokens": ' + b"9" * 5000 + b"}",
            b'{"model": "' + MODEL.encode() + b'", "n": ' + b"9" * 4300 + b"}",
            b'{"model": "' + MODEL.encode() + b'", "temperature": 1e999, "top_p": NaN}',
            b'{"model": "' + MODEL.encode() + b'", "max_tokens": 5, "max_tokens": "x"}',
            b'{"model": "gpt-test\xed\xa0\x80", "messages": []}',
        ]
    ),
)


@st.composite
def encoded_json(draw: st.DrawFn) -> bytes:
    value = draw(mostly(request_bodies, json_values))
    encoding = draw(mostly(st.just("ascii"), st.sampled_from(["utf-8", "utf-16"])))
    if encoding == "ascii":
        return json.dumps(value).encode()
    text = json.dumps(value, ensure_ascii=False)
    # A lone surrogate as the three bytes UTF-8 would give it (invalid UTF-8).
    return text.encode(encoding, "surrogatepass")


bodies = mostly(encoded_json(), raw_bodies)

# What an HTTP/1.1 field value may hold: visible ASCII, bytes past 0x7f, inner spaces.
_FIELD_CHARS = "".join(map(chr, [*range(0x21, 0x7F), *range(0x80, 0x100)]))
field_values = st.one_of(
    st.text(st.sampled_from(_FIELD_CHARS + " \t"), max_size=30).map(
        lambda text: text.strip(" \t").encode("latin-1")
    ),
    st.sampled_from([b"", b"null", b"\xff\xfe", b"sk-", b"Bearer", b"%00", b"\\u0000"]),
)
_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
field_names = st.text(st.sampled_from(_TOKEN_CHARS), min_size=1, max_size=16).filter(
    lambda name: name.lower() not in TRANSPORT_HEADERS
)
content_types = mostly(
    st.just(b"application/json"),
    st.sampled_from(
        [
            b"application/json; charset=utf-8",
            b"Application/JSON",
            b"application/json;",
            b"application/json ; charset=latin-1",
            b"text/plain",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"application/jsonx",
            b"application/vnd.api+json",
        ]
    ),
    field_values,
)
# Zone ids included: an entry inet refuses must never cost a log row or a charge.
forwarded_for = st.one_of(
    st.sampled_from(
        [
            b"203.0.113.9",
            b"10.9.9.9, 203.0.113.9",
            b"203.0.113.9, 127.0.0.1",
            b"127.0.0.1",
            b"unknown",
            b", , ,",
            b"::1",
            b"[2001:db8::1]:443",
            b"203.0.113.9:8080",
            b"999.1.1.1",
            b"2001:db8::1",
            b"::ffff:203.0.113.9",
            b"fe80::1%eth0",
            b"<script>",
        ]
    ),
    st.lists(st.ip_addresses().map(lambda address: str(address).encode()), max_size=3).map(
        b", ".join
    ),
    field_values,
)


@dataclass
class Example:
    """One request, as drawn."""

    method: str
    path: str  # as sent, percent-encoded
    query: str
    key_name: str | None  # a key of the `keys` fixture, or None for a made-up one
    headers: list[tuple[bytes, bytes]]
    body: bytes
    # None: an honest Content-Length; else declared minus actual length, sent raw.
    length_skew: int | None
    chunked: bool

    def summary(self) -> str:
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return (
            f"{self.method} {self.path}?{self.query} key={self.key_name}"
            f" headers={self.headers} skew={self.length_skew} chunked={self.chunked}"
            f" body={body!r}"
        )


def _quoted(text: str, safe: str = "") -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe=safe)


paths = mostly(
    st.sampled_from(CALL_PATHS),
    st.sampled_from(KNOWN_PATHS),
    st.sampled_from(KNOWN_PATHS).map(lambda path: path + "/"),
    st.sampled_from(
        [
            "/v1",
            "/v1/",
            "/v1/images/generations",
            "/v1/audio/speech",
            "/v1/chat",
            "/v1/models/gpt-test",
            "/v1/chat/completions/extra",
            "/v1//chat/completions",
            "/v1/CHAT/COMPLETIONS",
            "/v1/chat%2Fcompletions",
            "/v1/messages%2F",
            "/v1/%00",
            "/v1/%ff%fe",
            "/v1/..%2F..%2Fadmin",
        ]
    ),
    st.lists(texts, min_size=1, max_size=3).map(
        lambda segments: "/v1/" + "/".join(_quoted(segment) for segment in segments)
    ),
)
queries = mostly(
    st.just(""),
    st.lists(st.tuples(texts, texts), max_size=3).map(
        lambda pairs: "&".join(f"{_quoted(name)}={_quoted(value)}" for name, value in pairs)
    ),
    st.sampled_from(["stream=true", "model=gpt-test", "%zz", "&&==", "api_key=sk-x", "a=%00"]),
)
KEY_NAMES = ["funded", "quota", "narrow", "office", "disabled", "expired", "spent"]


# Fields the relay passes on, or reads only to translate or estimate: any value may come.
PASSED_ON_FIELDS = {
    "system": st.one_of(texts, st.lists(content_blocks, max_size=2), json_scalars, json_values),
    "prompt": st.one_of(texts, json_scalars, json_values),
    "input": st.one_of(texts, st.lists(texts, max_size=3), json_scalars, json_values),
    "stream": st.one_of(st.booleans(), json_scalars, json_values),
    "stream_options": st.one_of(
        st.fixed_dictionaries({"include_usage": json_values}), json_scalars, json_values
    ),
    "n": odd_numbers,
    "best_of": odd_numbers,
    "temperature": odd_numbers,
    "top_p": odd_numbers,
    "stop": json_values,
    "stop_sequences": json_values,
    "encoding_format": st.one_of(st.sampled_from(["float", "base64"]), json_values),
    "tools": json_values,
    "user": json_values,
}


@st.composite
def servable_bodies(draw: st.DrawFn) -> bytes:
    """A request the relay forwards: a served model and a valid limit, anything else odd."""
    body: dict[str, Any] = {"model": draw(st.sampled_from(MODELS))}
    limit = draw(st.sampled_from([None, "max_tokens", "max_completion_tokens"]))
    if limit is not None:
        body[limit] = draw(st.integers(min_value=1, max_value=40))
    body["messages"] = draw(messages)
    for name, values in PASSED_ON_FIELDS.items():
        if draw(st.integers(0, 2)) == 0:
            body[name] = draw(values)
    return json.dumps(body).encode()


@st.composite
def examples(draw: st.DrawFn) -> Example:
    # Half the requests are ones the relay serves, but for odd values in fields it
    # passes on; the other half may be wrong anywhere.
    servable = draw(st.booleans())
    # /v1/messages twice as often: it reads the most of a body (translation, estimates).
    path = draw(st.sampled_from([*CALL_PATHS, "/v1/messages"]) if servable else paths)
    is_call = path.rstrip("/") in CALL_PATHS
    if servable:
        method = "POST"
    elif is_call:
        method = draw(mostly(st.just("POST"), st.sampled_from(METHODS)))
    else:
        method = draw(st.sampled_from(METHODS))
    key_names = st.sampled_from(["funded", "quota"])
    key_name = draw(
        key_names if servable else mostly(key_names, st.sampled_from(KEY_NAMES), st.none())
    )
    made_up_key = draw(
        st.one_of(
            st.sampled_from([b"sk-nope", b"sk-" + b"A" * 39, b"sk-" + b"0" * 45]), field_values
        )
    )
    key = b"{key}" if key_name is not None else made_up_key
    placements = st.sampled_from([[(b"authorization", b"Bearer " + key)], [(b"x-api-key", key)]])
    placement = draw(
        placements
        if servable
        else mostly(
            placements,
            st.sampled_from(
                [
                    [(b"authorization", b"bearer  " + key)],
                    [(b"authorization", b"BEARER\t" + key)],
                    [(b"authorization", key)],
                    [(b"authorization", b"Basic " + key)],
                    [(b"authorization", b"Bearer")],
                    [(b"authorization", b""), (b"x-api-key", key)],
                    [(b"authorization", b"Bearer sk-nope"), (b"x-api-key", key)],
                    [(b"authorization", b"Bearer " + key), (b"authorization", b"Bearer sk-nope")],
                    [],
                ]
            ),
        )
    )
    headers = list(placement)
    content_type = draw(
        st.just(b"application/json") if servable else mostly(content_types, st.none())
    )
    if content_type is not None:
        headers.append((b"content-type", content_type))
    for name, values in (
        (b"accept", st.sampled_from([b"*/*", b"text/event-stream", b"application/json"])),
        (b"anthropic-version", st.sampled_from([b"2023-06-01", b"2099-13-45"])),
        (b"anthropic-beta", st.just(b"tools-2024-04-04")),
    ):
        if draw(st.integers(0, 3)) == 0:
            headers.append((name, draw(st.one_of(values, field_values))))
    if draw(st.integers(0, 3)) == 0:
        headers.append((b"x-forwarded-for", draw(forwarded_for)))
    extra = draw(st.lists(st.tuples(field_names, field_values), max_size=2))
    headers.extend((name.encode(), value) for name, value in extra)
    if servable:
        body = draw(servable_bodies())
    elif method not in ("GET", "HEAD") or draw(st.booleans()):
        body = draw(bodies)
    else:
        body = b""
    length_skew = None
    chunked = False
    if body and method == "POST" and draw(st.integers(0, 9)) == 0:
        length_skew = draw(st.sampled_from([-len(body), -1, 1, 100]))
    elif body and method != "HEAD":
        chunked = draw(st.integers(0, 9)) == 0
    return Example(
        method=method,
        path=path,
        query=draw(queries),
        key_name=key_name,
        headers=headers,
        body=body,
        length_skew=length_skew,
        chunked=chunked,
    )


def _plain(method: str, path: str, body: bytes = b"", **headers: bytes) -> Example:
    """A request of one known kind, sent with the funded key unless it says otherwise."""
    header_list = [(name.replace("_", "-").encode(), value) for name, value in headers.items()]
    if "authorization" not in headers:
        header_list.insert(0, (b"authorization", b"Bearer {key}"))
    return Example(method, path, "", "funded", header_list, body, None, False)


_CHAT = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
# Besides what is drawn, one request of every kind of answer, so that each is always
# reached whatever the draw.
KNOWN_KINDS = [
    _plain("POST", "/v1/chat/completions", _CHAT, content_type=b"application/json"),
    _plain("POST", "/v1/chat/completions", b"{", content_type=b"application/json"),
    _plain("POST", "/v1/chat/completions", _CHAT, authorization=b"Bearer sk-nope"),
    _plain("POST", "/v1/no-such-route", _CHAT, content_type=b"application/json"),
    _plain("GET", "/v1/chat/completions"),
    _plain("POST", "/v1/chat/completions", _CHAT, content_type=b"text/plain"),
]


# --- sending ---------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes


def _send_raw(base_url: str, example: Example, headers: list[tuple[bytes, bytes]]) -> Answer | None:
    """Send with a Content-Length that is not the body's length; None if nothing came back."""
    assert example.length_skew is not None
    url = httpx.URL(base_url)
    target = example.path + (f"?{example.query}" if example.query else "")
    declared = len(example.body) + example.length_skew
    lines = [
        f"{example.method} {target} HTTP/1.1".encode(),
        f"host: {url.host}:{url.port}".encode(),
        b"connection: close",
        f"content-length: {declared}".encode(),
        *(name + b": " + value for name, value in headers),
    ]
    received = b""
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + example.body)
        if example.length_skew > 0:
            # The rest never comes: the client goes away.
            sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
    if not received:
        return None
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    answer_headers = httpx.Headers([tuple(line.split(b": ", 1)) for line in header_lines])
    length = int(answer_headers.get("content-length", len(rest)))
    return Answer(int(status_line.split()[1]), answer_headers, rest[:length])


def send(
    client: httpx.Client, base_url: str, example: Example, keys: dict[str, str]
) -> Answer | None:
    key = keys[example.key_name].encode() if example.key_name else b""
    # Stripped as a client would: a field value has no leading or trailing whitespace.
    headers = [
        (name, value.replace(b"{key}", key).strip(b" \t")) for name, value in example.headers
    ]
    if example.length_skew is not None:
        return _send_raw(base_url, example, headers)
    content: Any = example.body
    if example.chunked:
        middle = len(example.body) // 2
        content = iter([example.body[:middle], example.body[middle:]])
    url = httpx.URL(base_url).copy_with(
        raw_path=(example.path + (f"?{example.query}" if example.query else "")).encode()
    )
    response = client.request(example.method, url, headers=headers, content=content)
    return Answer(response.status_code, response.headers, response.content)


# --- the books -------------------------------------------------------------------------


@dataclass(frozen=True)
class Books:
    """What one account and its tokens hold and have spent, and the last log row."""

    balance: int
    reserved: int
    used: int
    tokens: dict[int, tuple[int, int, int | None]]  # id -> used, reserved, quota_remaining
    last_log_id: int

    @classmethod
    def read(cls, user_id: int) -> "Books":
        account = Account.objects.get(pk=user_id)
        tokens = {
            token_id: (used, reserved, quota)
            for token_id, used, reserved, quota in Token.objects.filter(
                user_id=user_id
            ).values_list("id", "used", "reserved", "quota_remaining")
        }
        last = RequestLog.objects.order_by("-pk").values_list("pk", flat=True).first()
        return cls(account.balance, account.reserved, account.used, tokens, last or 0)


def _wait_until_settled(relay: Any, user_id: int, request_id: str | None) -> None:
    """Let the relay write what it settled, and give every grant back.

    Settling follows the response; a grant that a request still holds part of goes
    back once that request settles.
    """
    deadline = time.monotonic() + 5
    while request_id and not RequestLog.objects.filter(request_id=request_id).exists():
        if time.monotonic() > deadline:
            break  # the assertions say what is missing
        time.sleep(0.005)
    while relay.pending_work and time.monotonic() < deadline:
        time.sleep(0.005)
    while True:
        relay.meter.return_all()
        held = Account.objects.filter(pk=user_id, reserved=0).exists() and not (
            Token.objects.filter(user_id=user_id).exclude(reserved=0).exists()
        )
        if held or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _check_error_body(answer: Answer, *, anthropic_format: bool) -> None:
    assert answer.headers.get("content-type", "").startswith("application/json")
    body = json.loads(answer.body)
    if anthropic_format:
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
        assert isinstance(body["error"]["type"], str)
    else:
        assert set(body["error"]) >= {"message", "type", "param", "code"}
    message = body["error"]["message"]
    assert isinstance(message, str)
    assert any(character.isalpha() for character in message), message


def _with_examples(known: list[Example]):
    def decorate(test):
        for example in reversed(known):
            test = hypothesis.example(example=example)(test)
        return test

    return decorate


# --- the test --------------------------------------------------------------------------


@pytest.fixture
def keys(funded_user, token_key, catalog_model):
    """Keys of the funded user's tokens, one for each way a token can refuse or not."""
    vendor = Vendor.objects.get(name="testvendor")
    catalog_entry_create(
        entry=CatalogModel(name=MOCK_MODEL, vendor=vendor, model_ratio=Decimal("0.5"))
    )
    catalog_entry_create(
        entry=CatalogModel(
            name=CLAUDE_MODEL,
            vendor=vendor,
            model_ratio=Decimal("2"),
            completion_ratio=Decimal("3"),
            cached_ratio=Decimal("0.1"),
        )
    )
    catalog_entry_create(
        entry=CatalogModel(
            name=PER_CALL_MODEL, vendor=vendor, kind=CatalogModel.Kind.IMAGE, price_per_call=7_000
        )
    )
    _token, quota = token_create(user=funded_user, name="quota", quota_remaining=50_000_000)
    _token, narrow = token_create(user=funded_user, name="narrow", allowed_models=[MOCK_MODEL])
    _token, office = token_create(
        user=funded_user, name="office", allowed_networks=["203.0.113.0/24"]
    )
    disabled_token, disabled = token_create(user=funded_user, name="disabled")
    token_set_enabled(token=disabled_token, is_enabled=False)
    _token, expired = token_create(
        user=funded_user, name="expired", expires_at=timezone.now() - timedelta(minutes=1)
    )
    _token, spent = token_create(user=funded_user, name="spent", quota_remaining=0)
    return {
        "funded": token_key,
        "quota": quota,
        "narrow": narrow,
        "office": office,
        "disabled": disabled,
        "expired": expired,
        "spent": spent,
    }


def test_no_request_breaks_the_relay_or_the_books(
    relay_url, relay_server, fake_upstream, openai_channel, funded_user, keys, settings, capsys
):
    # Given every kind of channel (OpenAI and Anthropic on the fake upstream, mock) and
    # a proxy the relay believes X-Forwarded-For from
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]
    make_channel("mock", "", kind="mock", served_models=[MOCK_MODEL, PER_CALL_MODEL])
    make_channel(
        "anthropic", f"{fake_upstream.url}/v1", kind="anthropic", served_models=[CLAUDE_MODEL]
    )
    make_channel(
        "openai for claude", f"{fake_upstream.url}/v1", served_models=[CLAUDE_MODEL], priority=-1
    )
    relay = relay_server.relay
    assert relay.meter is not None
    base_url = relay_server.url
    statuses: Counter[int | None] = Counter()

    @given(example=examples())
    @_with_examples(KNOWN_KINDS)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize="RELAY_FUZZ_EXAMPLES" not in os.environ,
        database=None,
    )
    def check(example: Example) -> None:
        hypothesis.note(example.summary())
        before = Books.read(funded_user.pk)
        forwarded_before = fake_upstream.app.stats.requests

        # When the request is sent
        answer = send(client, base_url, example, keys)

        request_id = answer.headers.get("x-request-id") if answer else None
        _wait_until_settled(relay, funded_user.pk, request_id)
        after = Books.read(funded_user.pk)
        logs = list(RequestLog.objects.filter(pk__gt=before.last_log_id))
        statuses[answer.status if answer else None] += 1

        # Then it is answered without a server error, and an error is in the route's format
        decoded_path = urllib.parse.unquote(example.path).rstrip("/") or "/"
        if answer is not None:
            is_billing_unavailable = answer.status == 503 and BILLING_UNAVAILABLE.encode() in (
                answer.body
            )
            assert answer.status < 500 or is_billing_unavailable, answer.body[:500]
            if decoded_path not in KNOWN_PATHS:
                assert answer.status == 404
            if answer.status >= 300 and example.method != "HEAD":
                _check_error_body(answer, anthropic_format=decoded_path == "/v1/messages")

        # and what it was charged is what its log row says, on the account and the token
        charged = 0
        expected_tokens = dict(before.tokens)
        if request_id:
            [log] = logs
            assert (log.request_id, log.status_code) == (request_id, answer.status)
            assert log.user_id == funded_user.pk
            charged = log.cost
            if answer.status >= 400:
                assert charged == 0
            used, _reserved, quota = before.tokens[log.token_id]
            expected_tokens[log.token_id] = (
                used + charged,
                0,
                None if quota is None else quota - charged,
            )
        else:
            # A refusal (or /v1/models): no log row, nothing forwarded, nothing charged.
            assert logs == []
            assert fake_upstream.app.stats.requests == forwarded_before
            if answer is not None and answer.status < 300:
                assert decoded_path == "/v1/models", "answered without a request id"
        assert (after.balance, after.reserved, after.used) == (
            before.balance - charged,
            0,
            before.used + charged,
        )
        assert after.tokens == expected_tokens

    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        check()
        elapsed = time.monotonic() - started

    with capsys.disabled():
        print(
            f"\n{sum(statuses.values())} relay requests in {elapsed:.1f} s;"
            f" statuses: {dict(sorted(statuses.items(), key=str))}"
        )
    # Every kind of answer was reached: served, refused as bad input, unauthenticated.
    assert {200, 400, 401, 404, 405, 415} <= set(statuses)
    output = StringIO()
    call_command("reconcile", stdout=output)
    assert "no drift" in output.getvalue()
