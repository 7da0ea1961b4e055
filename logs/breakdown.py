"""The cost of one request log row, worked out with its own numbers.

The console shows this under each row so a user can check the charge by hand
against the formula of `models_catalog.pricing` (DESIGN.md, "Pricing formula").
"""

from dataclasses import dataclass
from decimal import Decimal, localcontext

from logs.models import RequestLog
from models_catalog.pricing import MICRO_USD_PER_TOKEN_AT_RATIO_ONE, call_cost, request_cost

TIMES = " \u00d7 "  # the multiplication sign people write formulas with


@dataclass(frozen=True)
class CostBreakdown:
    formula: str  # the formula in symbols
    worked: str  # the same with this request's numbers
    computed: int | None  # micro-USD the formula gives, None when nothing was billable
    charged: int
    note: str = ""


def _number(value: Decimal) -> str:
    return f"{value.normalize():f}"


def cost_breakdown(log: RequestLog) -> CostBreakdown:
    """Return the formula of `log`'s cost with its tokens and multipliers filled in."""
    group = Decimal(log.group_ratio)
    if log.price_per_call is not None:
        computed = call_cost(price_per_call=log.price_per_call, group_ratio=group)
        return _with_note(
            log,
            formula=f"ceil(price per call{TIMES}group ratio)",
            worked=f"ceil({log.price_per_call:,}{TIMES}{_number(group)}) = {computed:,} micro-USD",
            computed=computed,
        )
    formula = (
        f"ceil((prompt + completion{TIMES}completion ratio){TIMES}model ratio{TIMES}"
        f"group ratio{TIMES}{MICRO_USD_PER_TOKEN_AT_RATIO_ONE})"
    )
    if log.status_code >= 400 or (log.prompt_tokens == 0 and log.completion_tokens == 0):
        return CostBreakdown(
            formula=formula,
            worked="No tokens were used: nothing to bill.",
            computed=None,
            charged=log.cost,
            note="" if log.cost == 0 else "A charge without tokens: contact support.",
        )
    model, completion_ratio = Decimal(log.model_ratio), Decimal(log.completion_ratio)
    with localcontext(prec=80):
        exact = (
            (log.prompt_tokens + log.completion_tokens * completion_ratio)
            * model
            * group
            * MICRO_USD_PER_TOKEN_AT_RATIO_ONE
        )
    computed = request_cost(
        prompt_tokens=log.prompt_tokens,
        completion_tokens=log.completion_tokens,
        model_ratio=model,
        completion_ratio=completion_ratio,
        group_ratio=group,
    )
    worked = (
        f"ceil(({log.prompt_tokens:,} + {log.completion_tokens:,}{TIMES}"
        f"{_number(completion_ratio)}){TIMES}{_number(model)}{TIMES}{_number(group)}"
        f"{TIMES}{MICRO_USD_PER_TOKEN_AT_RATIO_ONE}) "
        f"= ceil({_number(exact)}) = {computed:,} micro-USD"
    )
    return _with_note(log, formula=formula, worked=worked, computed=computed)


def _with_note(log: RequestLog, *, formula: str, worked: str, computed: int) -> CostBreakdown:
    note = ""
    if computed != log.cost:
        if log.cached_tokens and log.cost < computed:
            note = (
                f"{log.cached_tokens:,} of the prompt tokens were cached and billed at the "
                "model's lower cached-input price."
            )
        elif log.cost < computed:
            # Only rows from before every answered request was charged in full.
            note = (
                "Less was charged than the formula gives: until 2026-12-05 the part of a "
                "cost above what the request held was not charged."
            )
        else:
            note = "More was charged than the formula gives: contact support."
    if log.usage_estimated:
        note = (note + " " if note else "") + (
            "The upstream reported no token counts, so they were estimated."
        )
    return CostBreakdown(formula, worked, computed, log.cost, note)
