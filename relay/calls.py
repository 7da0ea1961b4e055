"""One relayed call: its facts in one object, the checks of its body, its price.

A `Call` is built once the request is authenticated and its body read, and is
what the forwarding (`relay.forwarding`) and the settlement see of it.
"""

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_noop

from accounts.tokens import TokenInfo
from core.inputs import json_loads, storable_text_problem
from models_catalog.models import CatalogModel
from models_catalog.pricing import request_cost
from models_catalog.selectors import ModelPrice

from . import counting, upstream
from .http import RelayError
from .selectors import ChannelRoute
from .usage import Usage

# What `storable_text_problem` finds in a model name, as whole sentences a catalog translates.
MODEL_NAME_PROBLEMS = {
    "contains a NUL character": gettext_noop("The model name contains a NUL character."),
    "contains a lone surrogate (not valid Unicode)": gettext_noop(
        "The model name contains a lone surrogate (not valid Unicode)."
    ),
}

CALLS = {
    "/v1/chat/completions": upstream.CHAT,
    "/v1/completions": upstream.COMPLETIONS,
    "/v1/embeddings": upstream.EMBEDDINGS,
    "/v1/messages": upstream.MESSAGES,
    "/v1/responses": upstream.RESPONSES,
}
# Anthropic's token count of a Messages request, answered by the relay itself.
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# Where clients expect errors in Anthropic's shape.
ANTHROPIC_PATHS = frozenset(
    {*(path for path, endpoint in CALLS.items() if endpoint.anthropic_format), COUNT_TOKENS_PATH}
)
MODELS_PATH = "/v1/models"

# A model whose kind needs an endpoint the relay does not offer yet (the vendors' task
# APIs): not listed, and answered as a model that is not there (relay/README.md).
COMING_SOON_MESSAGES = {
    CatalogModel.Kind.VIDEO.value: gettext_noop(
        "The model '%(model)s' makes videos through a task API that Comet does not offer "
        "yet; it is coming soon."
    ),
    CatalogModel.Kind.MUSIC.value: gettext_noop(
        "The model '%(model)s' makes music through a task API that Comet does not offer "
        "yet; it is coming soon."
    ),
}
# The text endpoints (chat, completions, messages and their token count) serve chat models;
# a model of another kind is refused with the endpoint it is called at.
TEXT_ENDPOINT_PATHS = frozenset(
    {"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses", COUNT_TOKENS_PATH}
)
WRONG_ENDPOINT_MESSAGES = {
    CatalogModel.Kind.EMBEDDING.value: gettext_noop(
        "The model '%(model)s' is an embedding model: call it at /v1/embeddings, not %(path)s."
    ),
    CatalogModel.Kind.IMAGE.value: gettext_noop(
        "The model '%(model)s' is an image model: call it at /v1/images/generations or "
        "/v1/images/edits, not %(path)s."
    ),
    CatalogModel.Kind.AUDIO.value: gettext_noop(
        "The model '%(model)s' is an audio model: call it at /v1/audio/speech, "
        "/v1/audio/transcriptions or /v1/audio/translations, not %(path)s."
    ),
}
# The image and audio endpoints serve models of their kind only.
MEDIA_KIND_PATHS = {
    CatalogModel.Kind.IMAGE.value: frozenset({"/v1/images/generations", "/v1/images/edits"}),
    CatalogModel.Kind.AUDIO.value: frozenset(
        {"/v1/audio/speech", "/v1/audio/transcriptions", "/v1/audio/translations"}
    ),
}
MEDIA_PATHS = frozenset().union(*MEDIA_KIND_PATHS.values())
NOT_MEDIA_MESSAGE = gettext_noop(
    "The model '%(model)s' is not an image or audio model of the kind %(path)s serves: call "
    "it at /v1/chat/completions or /v1/embeddings."
)
UNIT_PRICED_MESSAGE = gettext_noop(
    "The model '%(model)s' is priced per image, per 1M characters or per minute: call it at "
    "/v1/images/* or /v1/audio/*, not %(path)s."
)
# /v1/embeddings refuses the kinds that make images or sound (a chat model may embed
# on some upstreams, so the default kind passes).
EMBEDDINGS_REFUSED_KINDS = frozenset({CatalogModel.Kind.IMAGE.value, CatalogModel.Kind.AUDIO.value})
# The most completion tokens a request may ask for: above every model's output limit,
# and low enough that its hold stays a sane amount of money.
MAX_COMPLETION_TOKENS = 1_000_000
COMPLETION_LIMIT_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# Each choice an upstream generates is billed: `n` answers, or `best_of` candidates
# (legacy completions) of which `n` are returned. Bounded like OpenAI's own limit.
CHOICE_KEYS = ("n", "best_of")
MAX_CHOICES = 128
# Completion tokens a request's hold assumes when it sets no max_tokens and its model
# has no `completion_reserve`: a long answer of most models; what the answer really
# costs is charged in full anyway.
DEFAULT_COMPLETION_RESERVE = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """The facts of one relayed request, gathered before it is forwarded."""

    request_id: str
    endpoint: upstream.Endpoint
    token: TokenInfo
    address: str
    headers: dict[bytes, bytes]
    body: dict[str, Any]
    model: str
    stream: bool
    price: ModelPrice
    routes: list[ChannelRoute]
    started: float  # time.perf_counter() when the request arrived
    # The prompt as counted for the hold: the usage logged when the upstream reports none.
    prompt_tokens: int = 0
    # An image or audio call priced per unit (`relay.media.MediaBilling`): the unit, its
    # price, and what an answer is charged (characters, seconds; images are counted in
    # the answer). Empty for tokens and calls.
    unit: str = ""
    unit_price: int | None = None
    units: int = 0


def completion_allowed(*, body: dict[str, Any], price: ModelPrice) -> int:
    """Return the completion tokens a request allows, all choices together: its
    `max_completion_tokens` or `max_tokens`, else its model's completion reserve, times
    the choices it asks for (`n`, `best_of`)."""
    completion = price.completion_reserve
    if completion is None:
        completion = DEFAULT_COMPLETION_RESERVE
    for key in COMPLETION_LIMIT_KEYS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            completion = value
            break
    choices = [body[key] for key in CHOICE_KEYS if isinstance(body.get(key), int)]
    return completion * max([1, *choices])


def prompt_count(*, body: dict[str, Any], endpoint: upstream.Endpoint, price: ModelPrice) -> int:
    """Return the request's prompt tokens as counted from its content (`relay.counting`),
    never more than its model's context window (the upstream refuses a longer prompt)."""
    tokens = counting.prompt_tokens(endpoint=endpoint.name, body=body, model=price.model_name)
    if price.context_window:
        tokens = min(tokens, price.context_window)
    return tokens


def continued_prompt(prompt_tokens: int, context_tokens: int, *, price: ModelPrice) -> int:
    """Return the prompt a continuation is held for: its new input as counted plus the
    context of the response it continues (`relay.conversations`), which the upstream bills
    again as input; never more than the model's context window."""
    tokens = prompt_tokens + context_tokens
    if price.context_window:
        tokens = min(tokens, price.context_window)
    return tokens


def hold_tokens(
    *, prompt_tokens: int, body: dict[str, Any], price: ModelPrice, has_completion: bool
) -> tuple[int, int]:
    """Return the tokens a request's hold assumes: its prompt as counted, and the
    completion it allows (`completion_allowed`). The TPM limit admits on their sum."""
    return prompt_tokens, completion_allowed(body=body, price=price) if has_completion else 0


def reservation_amount(*, price: ModelPrice, prompt_tokens: int, completion_tokens: int) -> int:
    """Return what a request's hold is: the tokens of `hold_tokens` priced (DESIGN's money
    rules; an answer that costs more is charged in full)."""
    if price.price_per_call is not None or price.model_ratio is None:
        return request_cost(price)
    return request_cost(price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def actual_cost(*, usage: Usage, price: ModelPrice) -> int:
    """Return what an answered request costs."""
    return request_cost(
        price,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
    )


def request_body_parse(raw_body: bytes, *, has_completion: bool) -> tuple[dict[str, Any], str]:
    """Return the request's JSON object and its model name, or raise a 400 RelayError.

    Refused here, before anything is held: what is not JSON (invalid UTF-8,
    nesting deeper than `core.inputs.MAX_JSON_DEPTH`), a body that is not an object,
    a model name no database can hold (NUL, a lone surrogate), a completion limit
    that is not a whole number from 1 to MAX_COMPLETION_TOKENS, and a number of
    choices (`n`, `best_of`) that is not one from 1 to MAX_CHOICES.
    """
    try:
        body = json_loads(raw_body)
    except ValueError:
        raise RelayError(
            400, gettext_noop("The request body is not valid JSON."), code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise RelayError(
            400, gettext_noop("The request body must be a JSON object."), code="invalid_json"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RelayError(
            400,
            gettext_noop("Name the model: 'model' is required."),
            code="missing_model",
            param="model",
        )
    problem = storable_text_problem(model)
    if problem is not None:
        # Not quoted back: the name is what cannot be shown.
        raise RelayError(
            400,
            MODEL_NAME_PROBLEMS.get(problem, "The model name cannot be stored."),
            code="invalid_model",
            param="model",
        )
    if has_completion:
        for keys, highest in (
            (COMPLETION_LIMIT_KEYS, MAX_COMPLETION_TOKENS),
            (CHOICE_KEYS, MAX_CHOICES),
        ):
            for key in keys:
                value = body.get(key)
                if value is None:
                    continue
                if (
                    not isinstance(value, int)
                    or isinstance(value, bool)
                    or not 1 <= value <= highest
                ):
                    raise RelayError(
                        400,
                        gettext_noop("'%(key)s' must be a whole number from 1 to %(highest)s."),
                        code="invalid_value",
                        param=key,
                        params={"key": key, "highest": highest},
                    )
    return body, model


def model_kind_refusal(*, model: str, kind: str, path: str | None) -> RelayError | None:
    """Return the refusal of a model of `kind` called at `path` (None: looked up through
    `/v1/models/{id}`), or None if it may be.

    A kind without an endpoint yet (video, music) is 404 `model_not_found`, as the model is
    not listed; a model called at an endpoint of another kind is 400 `wrong_endpoint`,
    saying where it is called (rather than an upstream's confusing refusal).
    """
    coming_soon = COMING_SOON_MESSAGES.get(kind)
    if coming_soon is not None:
        return RelayError(
            404, coming_soon, code="model_not_found", param="model", params={"model": model}
        )
    if path is None:
        return None
    if path in MEDIA_PATHS:
        if path in MEDIA_KIND_PATHS.get(kind, ()):
            return None
        message = WRONG_ENDPOINT_MESSAGES.get(kind, NOT_MEDIA_MESSAGE)
        return RelayError(
            400,
            message,
            code="wrong_endpoint",
            param="model",
            params={"model": model, "path": path},
        )
    if (path in TEXT_ENDPOINT_PATHS and kind in WRONG_ENDPOINT_MESSAGES) or (
        path == "/v1/embeddings" and kind in EMBEDDINGS_REFUSED_KINDS
    ):
        return RelayError(
            400,
            WRONG_ENDPOINT_MESSAGES[kind],
            code="wrong_endpoint",
            param="model",
            params={"model": model, "path": path},
        )
    return None


def text_unit_refusal(*, price: ModelPrice, path: str) -> RelayError | None:
    """Return the refusal of a model priced per unit (image, character, minute) at a text
    endpoint, which counts only tokens and calls (None if it may be called there)."""
    if price.model_ratio is not None or price.price_per_call is not None:
        return None
    return RelayError(
        400,
        UNIT_PRICED_MESSAGE,
        code="wrong_endpoint",
        param="model",
        params={"model": price.model_name, "path": path},
    )


def model_id_check(model: str) -> None:
    """Raise a 400 RelayError for a model id (of `/v1/models/{id}`) no catalog can hold."""
    problem = storable_text_problem(model)
    if problem is not None:
        raise RelayError(
            400,
            MODEL_NAME_PROBLEMS.get(problem, "The model name cannot be stored."),
            code="invalid_model",
            param="model",
        )


def count_tokens_body_check(body: dict[str, Any]) -> None:
    """Raise a 400 RelayError unless `body` is a Messages request as Anthropic's token count
    takes it: `messages` a list of user and assistant turns whose content is text or a list
    of typed blocks, `system` text or blocks, `tools` a list."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise RelayError(
            400,
            gettext_noop("'messages' is required: a list of messages."),
            code="invalid_value",
            param="messages",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise RelayError(
                400,
                gettext_noop(
                    "messages.%(index)s must be an object whose role is 'user' or 'assistant'."
                ),
                code="invalid_value",
                param=f"messages.{index}",
                params={"index": index},
            )
        content = message.get("content")
        if not (
            isinstance(content, str)
            or (
                isinstance(content, list)
                and all(
                    isinstance(block, dict) and isinstance(block.get("type"), str)
                    for block in content
                )
            )
        ):
            raise RelayError(
                400,
                gettext_noop(
                    "messages.%(index)s.content must be text or a list of content blocks, "
                    "each an object with a 'type'."
                ),
                code="invalid_value",
                param=f"messages.{index}.content",
                params={"index": index},
            )
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise RelayError(
            400,
            gettext_noop("'system' must be text or a list of text blocks."),
            code="invalid_value",
            param="system",
        )
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise RelayError(
            400, gettext_noop("'tools' must be a list."), code="invalid_value", param="tools"
        )


# The longest `previous_response_id` taken (OpenAI's are about 50 characters).
MAX_RESPONSE_ID_CHARS = 256
INPUT_ITEMS_MESSAGE = gettext_noop(
    "'input' must be text or a list of input items, each an object (a message with a "
    "'role' and text or a list of content parts, a function_call, a function_call_output, ...)."
)


# Tools billed as tokens in the response's `usage`: the caller's own functions and custom
# (free-form) tools. Every other type (web_search, file_search, code_interpreter, mcp,
# image_generation, computer_use_preview, local_shell, ...) runs at OpenAI, which bills
# it outside `usage`: the relay could not charge it (relay/README.md).
TOKEN_TOOL_TYPES = frozenset({"function", "custom"})
HOSTED_TOOL_MESSAGE = gettext_noop(
    "Tools of type '%(type)s' are not offered: OpenAI runs them and bills them outside the "
    "response's usage, which Comet cannot charge. Use function or custom tools."
)
# Input items that carry their content in the request. Every other type either refers to
# something stored at the upstream (item_reference) or comes from a hosted tool.
CONTENT_ITEM_TYPES = frozenset(
    {
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call",
        "custom_tool_call_output",
        "reasoning",
    }
)
# Fields that name state stored at the upstream. Every customer shares our upstream
# account, so any of them could read another customer's; only `previous_response_id`,
# looked up under the caller's account (`relay.conversations`), may.
STORED_STATE_FIELDS = ("conversation", "prompt")
STORED_STATE_MESSAGE = gettext_noop(
    "'%(field)s' refers to something stored at the upstream, which Comet does not offer: "
    "send the content itself, or continue an earlier response with previous_response_id."
)


def _stored_state_refusal(param: str) -> RelayError:
    return RelayError(
        400,
        STORED_STATE_MESSAGE,
        code="unsupported_parameter",
        param=param,
        params={"field": param},
    )


def _parts_check(parts: Any, param: str) -> None:
    """Refuse a content part that names a stored file (`file_id` of input_file or
    input_image) rather than carrying it."""
    for index, part in enumerate(parts if isinstance(parts, list) else []):
        if isinstance(part, dict) and part.get("file_id") is not None:
            raise _stored_state_refusal(f"{param}.{index}.file_id")


def _item_check(item: dict[str, Any], index: int) -> None:
    """Refuse an input item that refers to stored state: of a type that does not carry its
    content, a reasoning item without its `encrypted_content` (the upstream would read the
    stored one by its id), a part naming a stored file."""
    kind = item.get("type", "message")
    if kind not in CONTENT_ITEM_TYPES:
        raise RelayError(
            400,
            gettext_noop(
                "input.%(index)s is an item of type '%(type)s', which Comet does not take: it "
                "refers to something stored at the upstream or comes from a hosted tool. Send "
                "messages, function and custom tool calls and their outputs, and reasoning "
                "items with their encrypted_content; continue an earlier response with "
                "previous_response_id."
            ),
            code="unsupported_parameter",
            param=f"input.{index}.type",
            params={"index": index, "type": kind},
        )
    if kind == "reasoning" and not isinstance(item.get("encrypted_content"), str):
        raise _stored_state_refusal(f"input.{index}.encrypted_content")
    _parts_check(item.get("content"), f"input.{index}.content")
    _parts_check(item.get("output"), f"input.{index}.output")


def _tools_check(tools: list[Any], tool_choice: Any) -> None:
    """Refuse a tool OpenAI runs (`TOKEN_TOOL_TYPES`), offered or forced by `tool_choice`."""
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in TOKEN_TOOL_TYPES:
            raise RelayError(
                400,
                HOSTED_TOOL_MESSAGE,
                code="unsupported_tool",
                param=f"tools.{index}.type",
                params={"type": kind if isinstance(kind, str) else "?"},
            )
    if not isinstance(tool_choice, dict):
        return  # "none", "auto", "required" (the upstream refuses another text)
    kind = tool_choice.get("type")
    # `allowed_tools` names a subset of `tools`, each with its type.
    named = tool_choice.get("tools") if kind == "allowed_tools" else [tool_choice]
    for tool in named if isinstance(named, list) else []:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in TOKEN_TOOL_TYPES:
            raise RelayError(
                400,
                HOSTED_TOOL_MESSAGE,
                code="unsupported_tool",
                param="tool_choice",
                params={"type": kind if isinstance(kind, str) else "?"},
            )


def responses_body_check(body: dict[str, Any]) -> None:
    """Raise a 400 RelayError unless `body` is shaped as a Responses request the relay can
    bill and keep to its account: `input` text or a list of item objects carrying their
    content (`_item_check`), whose message content is text or a list of part objects,
    `instructions` text, `tools` a list of function or custom tools, `previous_response_id`
    an id; no background response, nothing else stored upstream named (relay/README.md)."""
    if body.get("background") is True:
        raise RelayError(
            400,
            gettext_noop(
                "Background responses are not offered: 'background' must be false or left out."
            ),
            code="unsupported_parameter",
            param="background",
        )
    for field in STORED_STATE_FIELDS:
        if body.get(field) is not None:
            raise _stored_state_refusal(field)
    cache_options = body.get("prompt_cache_options")
    if isinstance(cache_options, dict) and cache_options.get("comparison_response_id") is not None:
        raise _stored_state_refusal("prompt_cache_options.comparison_response_id")
    items = body.get("input")
    if items is not None and not isinstance(items, str | list):
        raise RelayError(400, INPUT_ITEMS_MESSAGE, code="invalid_value", param="input")
    for index, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict) or not isinstance(item.get("type", "message"), str):
            raise RelayError(400, INPUT_ITEMS_MESSAGE, code="invalid_value", param=f"input.{index}")
        _item_check(item, index)
        if item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if not isinstance(item.get("role"), str) or not (
            isinstance(content, str)
            or (isinstance(content, list) and all(isinstance(part, dict) for part in content))
        ):
            raise RelayError(
                400,
                gettext_noop(
                    "input.%(index)s is a message: it needs a 'role' and a 'content' that is "
                    "text or a list of content parts, each an object."
                ),
                code="invalid_value",
                param=f"input.{index}",
                params={"index": index},
            )
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise RelayError(
            400,
            gettext_noop("'instructions' must be text."),
            code="invalid_value",
            param="instructions",
        )
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise RelayError(
            400, gettext_noop("'tools' must be a list."), code="invalid_value", param="tools"
        )
    _tools_check(tools or [], body.get("tool_choice"))
    previous = body.get("previous_response_id")
    if previous is not None and (
        not isinstance(previous, str)
        or not 0 < len(previous) <= MAX_RESPONSE_ID_CHARS
        or storable_text_problem(previous) is not None
    ):
        raise RelayError(
            400,
            gettext_noop("'previous_response_id' must be the id of an earlier response."),
            code="invalid_value",
            param="previous_response_id",
        )


def client_wants_stream_usage(body: dict[str, Any]) -> bool:
    """Return whether a streamed request asked for the usage chunk itself
    (`stream_options.include_usage`): the relay always asks the upstream for it."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
