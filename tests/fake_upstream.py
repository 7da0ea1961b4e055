"""A fake OpenAI/Anthropic-compatible upstream on loopback, for the tests and the benchmark.

Never routed by the site. Behaviour comes from the path segments before `/v1`, so
one server plays many channels: `http://127.0.0.1:PORT/status-500/v1` answers 500,
`/delay-200/v1` waits 200 ms, `/hang/v1` never answers, `/no-usage/v1` streams without
usage, `/break-stream/v1` drops the connection after two chunks, `/chunk-delay-50/v1`
waits between chunks, `/switch-a/v1` answers 503 while "a" is in `switched_off`,
`/cached-3/v1` reports 3 of the prompt's tokens as cached (OpenAI's
`prompt_tokens_details`, in answers that are not streamed), `/prompt-90000/v1` reports
a prompt of 90,000 tokens (in answers that are not streamed), `/models-only/v1` lists
its models but answers 500 to everything else, `/tool-calls/v1` answers a chat request
by calling each of its tools with `{"city": "Paris"}` (`/bad-tool-arguments/v1`: with
arguments that are not JSON).
A key in `key_answers` (the Bearer or x-api-key value) gets that status and headers
instead of an answer, whatever the path: a revoked or rate-limited key.
Answers are the mock channel's (`relay.mock`).

    python -m tests.fake_upstream --port 9100
"""

import argparse
import asyncio
import json
import socket
import threading
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import Any

import uvicorn

from relay import mock

MEDIA_ROUTES = frozenset(
    {
        "/images/generations",
        "/images/edits",
        "/audio/speech",
        "/audio/transcriptions",
        "/audio/translations",
    }
)


@dataclass
class FakeUpstreamStats:
    """What the fake saw: counts only (and the include_usage flag it was sent)."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_scenario: dict[str, int] = field(default_factory=dict)
    last_model: str = ""
    last_include_usage: bool | None = None
    last_authorization: str = ""
    # Requests per key (the Authorization or x-api-key header as sent).
    authorizations: dict[str, int] = field(default_factory=dict)
    # The last request's headers, and its parameters (the body without its content:
    # messages, input and prompt are left out).
    last_headers: dict[str, str] = field(default_factory=dict)
    last_parameters: dict[str, Any] = field(default_factory=dict)
    # The last chat request's messages without their text: role, and the tool calls
    # and tool results (`tool_call_id` and content) that tool tests follow.
    last_tool_messages: list[dict[str, Any]] = field(default_factory=list)
    # Of the last image or audio request: its content type, fields and files' sizes.
    last_content_type: str = ""
    last_fields: dict[str, str] = field(default_factory=dict)
    last_file_sizes: dict[str, int] = field(default_factory=dict)


class FakeUpstream:
    """The ASGI app of the fake upstream."""

    def __init__(self) -> None:
        self.stats = FakeUpstreamStats()
        self.switched_off: set[str] = set()
        # key → (status, headers) answered to a request sent with that key.
        self.key_answers: dict[str, tuple[int, dict[str, str]]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        if path == "/_stats":
            await self._json(send, 200, self.stats.__dict__)
            return
        if path == "/_reset":
            self.stats = FakeUpstreamStats()
            await self._json(send, 200, {})
            return
        segments = path.strip("/").split("/")
        if "v1" not in segments:
            await self._json(send, 404, {"error": {"message": "not found"}})
            return
        index = segments.index("v1")
        scenario, route = segments[:index], "/" + "/".join(segments[index + 1 :])
        chunks = b""
        while True:
            message = await receive()
            chunks += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.stats.requests += 1
        key = "/".join(scenario) or "ok"
        self.stats.by_scenario[key] = self.stats.by_scenario.get(key, 0) + 1
        headers = dict(scope["headers"])
        authorization = (headers.get(b"authorization") or headers.get(b"x-api-key") or b"").decode()
        self.stats.last_authorization = authorization
        self.stats.authorizations[authorization] = (
            self.stats.authorizations.get(authorization, 0) + 1
        )
        self.stats.last_headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in headers.items()
        }
        self.stats.last_parameters = _parameters(chunks)
        self.stats.last_tool_messages = _tool_messages(chunks)
        key = authorization.removeprefix("Bearer ")
        if key in self.key_answers:
            status, answer_headers = self.key_answers[key]
            await self._refuse(send, status, answer_headers)
            return
        self.stats.last_content_type = (headers.get(b"content-type") or b"").decode()
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            await self._answer(scenario, route, chunks, send)
        finally:
            self.stats.in_flight -= 1

    async def _refuse(self, send: Any, status: int, headers: dict[str, str]) -> None:
        code = "insufficient_quota" if headers.get("x-fake-code") == "quota" else "fake"
        body = json.dumps({"error": {"message": f"fake {status}", "code": code}}).encode()
        sent = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        sent += [(name.encode(), value.encode()) for name, value in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": sent})
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scenario: list[str], route: str, raw: bytes, send: Any) -> None:
        chunk_delay = 0.0
        for step in scenario:
            if step.startswith("delay-"):
                await asyncio.sleep(int(step.removeprefix("delay-")) / 1000)
            elif step.startswith("chunk-delay-"):
                chunk_delay = int(step.removeprefix("chunk-delay-")) / 1000
            elif step.startswith("switch-") and step.removeprefix("switch-") in self.switched_off:
                await self._json(send, 503, {"error": {"message": "switched off"}})
                return
            elif step == "models-only" and route != "/models":
                await self._json(send, 500, {"error": {"message": "fake 500"}})
                return
            elif step == "hang":
                await asyncio.sleep(3600)
            elif step.startswith("status-"):
                status = int(step.removeprefix("status-"))
                await self._json(send, status, {"error": {"message": f"fake {status}"}})
                return
        if route == "/models":
            await self._json(send, 200, {"object": "list", "data": []})
            return
        if route in MEDIA_ROUTES:
            await self._media(route, raw, send)
            return
        body = json.loads(raw or b"{}")
        model = str(body.get("model", ""))
        self.stats.last_model = model
        stream = body.get("stream") is True
        if stream:
            options = body.get("stream_options")
            self.stats.last_include_usage = bool(
                isinstance(options, dict) and options.get("include_usage")
            )
            if "no-usage" in scenario:
                body.pop("stream_options", None)
        if route not in mock.ANSWERS:
            await self._json(send, 404, {"error": {"message": "unknown route"}})
            return
        answer = mock.answer(route, body, model=model, stream=stream)
        if route == "/chat/completions" and (
            "tool-calls" in scenario or "bad-tool-arguments" in scenario
        ):
            answer = _tool_calls_answer(body, stream, broken="bad-tool-arguments" in scenario)
        if isinstance(answer, bytes):
            if "no-usage" in scenario:
                answer = json.dumps({**json.loads(answer), "usage": None}).encode()
            for step in scenario:
                if step.startswith("prompt-"):
                    payload = json.loads(answer)
                    reported = int(step.removeprefix("prompt-"))
                    key = "input_tokens" if route == "/messages" else "prompt_tokens"
                    payload["usage"][key] = reported
                    answer = json.dumps(payload).encode()
                if step.startswith("cached-"):
                    payload = json.loads(answer)
                    cached = {"cached_tokens": int(step.removeprefix("cached-"))}
                    payload["usage"]["prompt_tokens_details"] = cached
                    answer = json.dumps(payload).encode()
            await self._send(send, 200, b"application/json", answer)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for number, event in enumerate(answer):
            if "break-stream" in scenario and number == 2:
                raise ConnectionAbortedError("the fake upstream breaks the stream on purpose")
            if chunk_delay:
                await asyncio.sleep(chunk_delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _media(self, route: str, raw: bytes, send: Any) -> None:
        """Answer an image or audio request as the mock channel does, reading a multipart
        body with the standard library's MIME parser (not the relay's)."""
        content_type = self.stats.last_content_type
        fields: dict[str, str] = {}
        files: dict[str, int] = {}
        if content_type.startswith("multipart/form-data"):
            message = BytesParser(policy=policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + raw
            )
            if not message.is_multipart():
                await self._json(send, 400, {"error": {"message": "not multipart"}})
                return
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename() is not None:
                    files[str(name)] = len(payload)
                else:
                    fields[str(name)] = payload.decode()
        else:
            fields = json.loads(raw or b"{}")
        self.stats.last_model = str(fields.get("model", ""))
        self.stats.last_fields = {key: str(value) for key, value in fields.items()}
        self.stats.last_file_sizes = files
        answer = mock.media_answer(route, fields)
        assert answer is not None
        await self._send(send, 200, answer[0], answer[1])

    async def _json(self, send: Any, status: int, payload: Any) -> None:
        await self._send(send, status, b"application/json", json.dumps(payload).encode())

    async def _send(self, send: Any, status: int, content_type: bytes, body: bytes) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _parameters(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    return {key: value for key, value in body.items() if key not in ("messages", "input", "prompt")}


def _tool_messages(raw: bytes) -> list[dict[str, Any]]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return []
    messages = body.get("messages") if isinstance(body, dict) else None
    outline = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        kept = {"role": message.get("role")}
        for name in ("tool_calls", "tool_call_id"):
            if name in message:
                kept[name] = message[name]
        if message.get("role") == "tool":
            kept["content"] = message.get("content")
        outline.append(kept)
    return outline


def _tool_calls_answer(body: dict[str, Any], stream: bool, *, broken: bool) -> Any:
    """A chat answer that calls each of the request's tools with `{"city": "Paris"}`."""
    arguments = '{"city": "Par' if broken else '{"city": "Paris"}'
    tools = body.get("tools") or []
    calls = [
        {
            "id": f"call_fake_{number}",
            "type": "function",
            "function": {"name": tool["function"]["name"], "arguments": arguments},
        }
        for number, tool in enumerate(tools)
    ]
    usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    base = {"id": "chatcmpl-fake", "created": 0, "model": body.get("model", "")}
    if not stream:
        message = {"role": "assistant", "content": None, "tool_calls": calls}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        return json.dumps(
            {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        ).encode()

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        payload = {**base, "object": "chat.completion.chunk", "choices": [choice], **more}
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    for number, call in enumerate(calls):
        start = {**call, "index": number, "function": {**call["function"], "arguments": ""}}
        events.append(chunk({"tool_calls": [start]}))
        text = call["function"]["arguments"]
        for piece in (text[:5], text[5:12], text[12:]):
            if piece:
                events.append(
                    chunk({"tool_calls": [{"index": number, "function": {"arguments": piece}}]})
                )
    events.append(chunk({}, "tool_calls"))
    payload = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    events.append(b"data: " + json.dumps(payload).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


class ServerThread:
    """Serve an ASGI app with uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, app: Any, *, port: int = 0) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", port))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # proxy_headers off: Comet decides itself whom to believe (core/clientaddress.py).
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", access_log=False, proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.socket])), daemon=True
        )

    def start(self) -> "ServerThread":
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread stopped before it started")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9100)
    arguments = parser.parse_args()
    uvicorn.run(
        FakeUpstream(),
        host="127.0.0.1",
        port=arguments.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
