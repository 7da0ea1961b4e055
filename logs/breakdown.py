"""The cost of one request log row, worked out with its own numbers.

The console and the admin show this under each row so a user can check the charge by
hand. The numbers come from `models_catalog.pricing.request_cost_parts`, the arithmetic
the relay charged with, so the breakdown's result is the charge to the micro-USD: for
per-token and per-call prices, and for cached prompt tokens, whose ratio the row keeps
(`RequestLog.cached_ratio`). Rows from before that ratio was kept cannot say what their
cached tokens cost; their breakdown counts them as input and says so.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.utils.translation import gettext

from logs.models import RequestLog
from models_catalog.pricing import (
    MICRO_USD_PER_TOKEN_AT_RATIO_ONE,
    UNIT_BASIS,
    UNIT_CHARACTER,
    UNIT_IMAGE,
    CostParts,
    Rates,
    UnitCostParts,
    request_cost_parts,
    unit_cost_parts,
)

TIMES = " \u00d7 "  # the multiplication sign people write formulas with
MINUS = " \u2212 "


@dataclass(frozen=True)
class CostBreakdown:
    formula: str  # the formula in symbols
    worked: str  # the same with this request's numbers
    computed: int | None  # micro-USD the formula gives, None when nothing was billable
    charged: int
    note: str = ""
    # False when the row lacks a number its charge was computed with (see the note).
    is_exact: bool = True


def _number(value: Decimal | int) -> str:
    return f"{Decimal(value).normalize():f}"


def _result(parts: CostParts | UnitCostParts) -> str:
    """`= ceil(exact) = cost micro-USD`, and why when the least cost applied."""
    if parts.exact == 0:
        return gettext(" = ceil(0); the least a request costs is %(cost)s micro-USD") % {
            "cost": f"{parts.cost:,}"
        }
    return gettext(" = ceil(%(exact)s) = %(cost)s micro-USD") % {
        "exact": _number(parts.exact),
        "cost": f"{parts.cost:,}",
    }


def _rates(log: RequestLog, *, cached_ratio: Decimal | None) -> Rates:
    return Rates(
        model_ratio=Decimal(log.model_ratio),
        completion_ratio=Decimal(log.completion_ratio),
        cached_ratio=cached_ratio,
        group_ratio=Decimal(log.group_ratio),
        price_per_call=log.price_per_call,
    )


def cost_breakdown(log: RequestLog) -> CostBreakdown:
    """Return the formula of `log`'s cost with its tokens and multipliers filled in."""
    group = _number(log.group_ratio)
    if log.unit and log.unit_price is not None and log.status_code < 400:
        return _unit_breakdown(log)
    if log.price_per_call is not None:
        parts = request_cost_parts(_rates(log, cached_ratio=None))
        return _with_note(
            log,
            formula=gettext("ceil(price per call%(times)s group ratio)") % {"times": TIMES},
            worked=f"ceil({log.price_per_call:,}{TIMES}{group}){_result(parts)}",
            parts=parts,
        )
    no_tokens = log.prompt_tokens == 0 and log.completion_tokens == 0
    if log.status_code >= 400 or (no_tokens and log.cost == 0):
        return CostBreakdown(
            formula=gettext(
                "ceil((prompt + completion%(times)scompletion ratio)%(times)smodel ratio"
                "%(times)sgroup ratio%(times)s%(per_token)s)"
            )
            % {"times": TIMES, "per_token": MICRO_USD_PER_TOKEN_AT_RATIO_ONE},
            worked=gettext("The request was not answered: nothing to bill.")
            if log.status_code >= 400
            else gettext("No tokens were used: nothing to bill."),
            computed=None,
            charged=log.cost,
            note="" if log.cost == 0 else gettext("A charge without an answer: contact support."),
        )
    # A row written before cached_ratio was kept, with cached tokens: their price is not
    # known here, so they are counted as input (what they cost without a cached price).
    cached_ratio = None if log.cached_ratio is None else Decimal(log.cached_ratio)
    is_unrecorded = cached_ratio is None and log.cached_tokens > 0
    parts = request_cost_parts(
        _rates(log, cached_ratio=cached_ratio),
        prompt_tokens=log.prompt_tokens,
        completion_tokens=log.completion_tokens,
        cached_tokens=log.cached_tokens,
    )
    values = {
        "times": TIMES,
        "minus": MINUS,
        "per_token": MICRO_USD_PER_TOKEN_AT_RATIO_ONE,
    }
    multipliers = (
        f"{TIMES}{_number(log.model_ratio)}{TIMES}{group}{TIMES}{MICRO_USD_PER_TOKEN_AT_RATIO_ONE}"
    )
    completion = f"{parts.completion_tokens:,}{TIMES}{_number(log.completion_ratio)}"
    if cached_ratio is not None and parts.cached_tokens:
        formula = gettext(
            "ceil((prompt%(minus)scached + cached%(times)scached ratio + completion%(times)s"
            "completion ratio)%(times)smodel ratio%(times)sgroup ratio%(times)s%(per_token)s)"
        )
        cached = f"{parts.cached_tokens:,}{TIMES}{_number(cached_ratio)}"
        worked = f"ceil(({parts.input_tokens:,} + {cached} + {completion}){multipliers})"
    else:
        formula = gettext(
            "ceil((prompt + completion%(times)scompletion ratio)%(times)smodel ratio"
            "%(times)sgroup ratio%(times)s%(per_token)s)"
        )
        worked = f"ceil(({parts.input_tokens:,} + {completion}){multipliers})"
    return _with_note(
        log,
        formula=formula % values,
        worked=worked + _result(parts),
        parts=parts,
        is_unrecorded=is_unrecorded,
    )


def _unit_breakdown(log: RequestLog) -> CostBreakdown:
    """The breakdown of a row priced per image, per 1M characters or per minute."""
    assert log.unit_price is not None
    parts = unit_cost_parts(
        unit=log.unit,
        unit_price=log.unit_price,
        count=log.unit_count,
        group_ratio=Decimal(log.group_ratio),
    )
    group = _number(log.group_ratio)
    basis = UNIT_BASIS[log.unit]
    if log.unit == UNIT_IMAGE:
        formula = gettext("ceil(price per image%(times)simages%(times)sgroup ratio)")
        worked = f"ceil({log.unit_price:,}{TIMES}{log.unit_count:,}{TIMES}{group})"
    else:
        if log.unit == UNIT_CHARACTER:
            formula = gettext(
                "ceil(price per 1M characters%(times)scharacters / 1,000,000%(times)sgroup ratio)"
            )
        else:
            formula = gettext("ceil(price per minute%(times)sseconds / 60%(times)sgroup ratio)")
        worked = f"ceil({log.unit_price:,}{TIMES}{log.unit_count:,} / {basis:,}{TIMES}{group})"
    return _with_note(
        log, formula=formula % {"times": TIMES}, worked=worked + _result(parts), parts=parts
    )


def _with_note(
    log: RequestLog,
    *,
    formula: str,
    worked: str,
    parts: CostParts | UnitCostParts,
    is_unrecorded: bool = False,
) -> CostBreakdown:
    computed = parts.cost
    notes = []
    if computed != log.cost:
        if log.cost > computed:
            notes.append(gettext("More was charged than the formula gives: contact support."))
        elif is_unrecorded:
            notes.append(
                gettext(
                    "An approximation: this row is from before the price of cached prompt "
                    "tokens was kept with each request. Its %(cached)s cached prompt tokens "
                    "are counted here as input; they were charged at the model's lower "
                    "cached-input price, which this row does not record."
                )
                % {"cached": f"{log.cached_tokens:,}"}
            )
        else:
            # Only rows from before every answered request was charged in full.
            notes.append(
                gettext(
                    "Less was charged than the formula gives: until 2026-12-05 the part of a "
                    "cost above what the request held was not charged."
                )
            )
    if log.usage_estimated:
        notes.append(gettext("The upstream reported no token counts, so they were estimated."))
    return CostBreakdown(
        formula=formula,
        worked=worked,
        computed=computed,
        charged=log.cost,
        note=" ".join(notes),
        is_exact=computed == log.cost or not is_unrecorded,
    )
