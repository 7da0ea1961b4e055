"""A fake Azure OpenAI resource on loopback: deployments, `api-version` and `api-key`.

It serves `/openai/deployments/{deployment}/{chat/completions,completions,embeddings,
images/generations}` and refuses as Azure does what a wrong client would send: a missing
or other `api-version` (400), no `api-key` header or an `Authorization` one (401), an
unknown deployment (404). Answers are built with the `openai` SDK's types; a stream
starts as Azure's do, with a chunk of empty `choices` carrying `prompt_filter_results`,
and ends with the usage chunk when `stream_options.include_usage` asked for it.
"""

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from openai.types import CompletionUsage, CreateEmbeddingResponse, Embedding, ImagesResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion import Completion

API_VERSION = "2024-10-21"
DEPLOYMENT = "gpt4o-prod"
AZURE_KEY = "azure-key-0123456789abcdef"
USAGE = CompletionUsage(prompt_tokens=13, completion_tokens=5, total_tokens=18)
FILTER_RESULTS = {
    "prompt_index": 0,
    "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
}


@dataclass
class FakeAzure:
    """The ASGI app of the fake resource; `seen` keeps each request's path, query, key."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        query = parse_qs(scope["query_string"].decode())
        path: str = scope["path"]
        self.seen.append({"path": path, "query": query, "headers": headers})
        if query.get("api-version") != [API_VERSION]:
            await self._error(send, 400, "Unsupported or missing api-version")
            return
        if headers.get("api-key") != AZURE_KEY or "authorization" in headers:
            await self._error(send, 401, "Access denied due to invalid subscription key")
            return
        prefix = f"/openai/deployments/{DEPLOYMENT}/"
        if not path.startswith(prefix):
            await self._error(send, 404, "The API deployment for this resource does not exist.")
            return
        operation = path[len(prefix) :]
        body = json.loads(raw) if raw else {}
        self.seen[-1]["body"] = body
        if operation == "chat/completions" and body.get("stream") is True:
            await self._stream(send, body)
        elif operation == "chat/completions":
            await self._json(send, 200, _chat_answer(body).model_dump(mode="json"))
        elif operation == "completions":
            answer = Completion.model_validate(
                {
                    "id": "cmpl-1",
                    "object": "text_completion",
                    "created": 1,
                    "model": "gpt-4o",
                    "choices": [
                        {"index": 0, "text": "Hi", "finish_reason": "stop", "logprobs": None}
                    ],
                    "usage": USAGE.model_dump(),
                }
            )
            await self._json(send, 200, answer.model_dump(mode="json"))
        elif operation == "embeddings":
            answer = CreateEmbeddingResponse(
                object="list",
                model="text-embedding-3-small",
                data=[Embedding(object="embedding", index=0, embedding=[0.1, 0.2, 0.3])],
                usage={"prompt_tokens": 4, "total_tokens": 4},  # type: ignore[arg-type]
            )
            await self._json(send, 200, answer.model_dump(mode="json"))
        elif operation == "images/generations":
            images = ImagesResponse.model_validate({"created": 1, "data": [{"b64_json": "aGk="}]})
            await self._json(send, 200, images.model_dump(mode="json", exclude_none=True))
        else:
            await self._error(send, 404, "Unknown operation")

    async def _stream(self, send: Any, body: dict[str, Any]) -> None:
        def chunk(**values: Any) -> bytes:
            fields = {"id": "chatcmpl-az", "object": "chat.completion.chunk", "created": 1}
            fields["model"] = "gpt-4o-2024-08-06"
            payload = ChatCompletionChunk.model_validate({**fields, **values})
            data = payload.model_dump(mode="json", exclude_unset=True)
            return f"data: {json.dumps(data)}\n\n".encode()

        # Azure's first chunk: no choices, the prompt's content filter results.
        first = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [FILTER_RESULTS],
        }
        chunks = [f"data: {json.dumps(first)}\n\n".encode()]
        for index, piece in enumerate(("Hello ", "from ", "Azure")):
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            chunks.append(
                chunk(choices=[{"index": 0, "delta": delta, "finish_reason": None}], usage=None)
            )
        chunks.append(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            chunks.append(chunk(choices=[], usage=USAGE.model_dump()))
        chunks.append(b"data: [DONE]\n\n")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for data in chunks:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _error(self, send: Any, status: int, message: str) -> None:
        await self._json(send, status, {"error": {"code": str(status), "message": message}})

    async def _json(self, send: Any, status: int, payload: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


def _chat_answer(body: dict[str, Any]) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-az",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-2024-08-06",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from Azure"},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": USAGE.model_dump(),
            "prompt_filter_results": [FILTER_RESULTS],
        }
    )
