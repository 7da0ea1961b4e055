"""A fake Google Gemini upstream (the native API) on loopback, for the gemini channel's tests.

It answers `POST {base}/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse` (`data: {...}` events ending in CRLF, as Google sends
them). Every request is checked against google-genai's own models (`google.genai.types`,
which forbid unknown fields): one the real API would not read is answered 400
INVALID_ARGUMENT and kept in `invalid`. Answers are `types.GenerateContentResponse`
objects dumped as the wire format (camelCase, no nulls), set by the test in `answer`
(whole) and `chunks` (streamed; `break_after` cuts a stream short). Behaviour comes
from the path before `/v1beta`:
`/status-429/v1beta` answers 429 RESOURCE_EXHAUSTED, `/status-500/v1beta` 500,
`/status-400/v1beta` 400 INVALID_ARGUMENT with Google's error body, `/status-403/v1beta`
403 PERMISSION_DENIED as for a file the key may not read (no key reason); a key starting
`bad-` gets Google's answer to a wrong key (400, reason `API_KEY_INVALID`), one starting
`blocked-` its answer to a key blocked for the API (403, `API_KEY_SERVICE_BLOCKED`).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from google.genai import types

REQUEST_FIELDS = frozenset(
    {
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
        "safetySettings",
        "cachedContent",
    }
)
ERROR_STATUSES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
}

# A key's start → Google's answer to it: status, ErrorInfo reason, message.
KEY_REFUSALS = (
    ("bad-", 400, "API_KEY_INVALID", "API key not valid. Please pass a valid API key."),
    (
        "blocked-",
        403,
        "API_KEY_SERVICE_BLOCKED",
        "Requests to this API generativelanguage.googleapis.com are blocked.",
    ),
)


def wire(response: types.GenerateContentResponse) -> dict[str, Any]:
    """Return a response as Gemini's REST API sends it."""
    return response.model_dump(mode="json", by_alias=True, exclude_none=True)


def text_answer(
    text: str = "Hello from Gemini.",
    *,
    finish_reason: str = "STOP",
    prompt: int = 10,
    candidates: int = 4,
    thoughts: int | None = None,
    cached: int | None = None,
) -> types.GenerateContentResponse:
    return types.GenerateContentResponse(
        response_id="resp-fake",
        model_version="gemini-fake",
        candidates=[
            types.Candidate(
                index=0,
                content=types.Content(role="model", parts=[types.Part(text=text)]),
                finish_reason=types.FinishReason(finish_reason),
            )
        ],
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=prompt,
            candidates_token_count=candidates,
            thoughts_token_count=thoughts,
            cached_content_token_count=cached,
            total_token_count=prompt + candidates + (thoughts or 0),
        ),
    )


def request_check(body: Any) -> None:
    """Raise ValueError unless `body` is a generateContent request google-genai can read."""
    if not isinstance(body, dict) or not set(body) <= REQUEST_FIELDS:
        raise ValueError(f"unknown request fields: {sorted(set(body) - REQUEST_FIELDS)}")
    if not body.get("contents"):
        raise ValueError("no contents")
    for content in body["contents"]:
        parsed = types.Content.model_validate_json(json.dumps(content))
        if parsed.role not in ("user", "model") or not parsed.parts:
            raise ValueError("a content without a role or parts")
    if "systemInstruction" in body:
        types.Content.model_validate_json(json.dumps(body["systemInstruction"]))
    for tool in body.get("tools", []):
        types.Tool.model_validate_json(json.dumps(tool))
    if "toolConfig" in body:
        types.ToolConfig.model_validate_json(json.dumps(body["toolConfig"]))
    if "generationConfig" in body:
        types.GenerationConfig.model_validate_json(json.dumps(body["generationConfig"]))


@dataclass
class FakeGemini:
    """The ASGI app of the fake Gemini upstream."""

    answer: types.GenerateContentResponse = field(default_factory=text_answer)
    chunks: list[types.GenerateContentResponse] = field(default_factory=list)
    # What it was sent: each request's path, key and body (tests read them back).
    requests: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    # When set, a stream is cut after this many of `chunks` (the connection dropped).
    break_after: int = 0

    def reset(self) -> None:
        self.answer = text_answer()
        self.chunks = []
        self.break_after = 0
        self.requests.clear()
        self.invalid.clear()

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]["body"]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        path: str = scope["path"]
        prefix, _, rest = path.partition("/v1beta/models/")
        model, _, method = rest.partition(":")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(
            {
                "path": path,
                "query": scope["query_string"].decode(),
                "key": headers.get(b"x-goog-api-key", b"").decode(),
                "model": model,
                "body": body,
            }
        )
        for start, status, reason, message in KEY_REFUSALS:
            if self.requests[-1]["key"].startswith(start):
                # Google's answer to a refused key: the reason in the details.
                info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}
                body = {
                    "error": {
                        "code": status,
                        "message": message,
                        "status": ERROR_STATUSES[status],
                        "details": [info],
                    }
                }
                await self._send(send, status, b"application/json", json.dumps(body).encode())
                return
        for status in ERROR_STATUSES:
            if f"/status-{status}" in prefix:
                await self._error(send, status, f"Fake failure {status}.")
                return
        try:
            request_check(body)
        except ValueError as error:
            self.invalid.append(str(error))
            await self._error(send, 400, f"Invalid request: {error}")
            return
        if method == "streamGenerateContent" and self.break_after:
            await self._broken_stream(send)
        elif method == "streamGenerateContent":
            chunks = self.chunks or [self.answer]
            events = b"".join(
                b"data: " + json.dumps(wire(chunk)).encode() + b"\r\n\r\n" for chunk in chunks
            )
            await self._send(send, 200, b"text/event-stream", events)
        elif method == "generateContent":
            await self._send(send, 200, b"application/json", json.dumps(wire(self.answer)).encode())
        else:
            await self._error(send, 404, "Method not found.")

    async def _broken_stream(self, send: Any) -> None:
        """Send the first `break_after` chunks, then drop the connection."""
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in self.chunks[: self.break_after]:
            event = b"data: " + json.dumps(wire(chunk)).encode() + b"\r\n\r\n"
            await send({"type": "http.response.body", "body": event, "more_body": True})
        raise ConnectionAbortedError("the fake Gemini breaks the stream on purpose")

    async def _error(self, send: Any, status: int, message: str) -> None:
        body = {"error": {"code": status, "message": message, "status": ERROR_STATUSES[status]}}
        await self._send(send, status, b"application/json", json.dumps(body).encode())

    async def _send(self, send: Any, status: int, content_type: bytes, body: bytes) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
