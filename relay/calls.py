"""One relayed call: its facts in one object, the checks of its body, its price.

A `Call` is built once the request is authenticated and its body read, and is
what the forwarding (`relay.forwarding`) and the settlement see of it.
"""

from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext_noop

from accounts.tokens import TokenInfo
from core.inputs import json_loads, storable_text_problem
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
}
# The most completion tokens a request may ask for: above every model's output limit,
# and low enough that its hold stays a sane amount of money.
MAX_COMPLETION_TOKENS = 1_000_000
COMPLETION_LIMIT_KEYS = ("max_completion_tokens", "max_tokens")
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
