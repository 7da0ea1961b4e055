"""The one place that converts integer micro-USD to and from USD for people and JSON.

Inside Comet every amount is an integer of micro-USD (1 USD = 1,000,000).
"""

from decimal import ROUND_CEILING, Decimal, InvalidOperation

MICRO_PER_USD = 1_000_000
_SIX_PLACES = Decimal("0.000001")


class AmountError(ValueError):
    """A USD amount that cannot be turned into whole micro-USD."""


def usd_to_micro(value: str | Decimal | int) -> int:
    """Return `value` (USD) as integer micro-USD; refuse more than 6 decimals or junk."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as error:
        raise AmountError(f"“{value}” is not an amount in USD.") from error
    if not amount.is_finite():
        raise AmountError(f"“{value}” is not an amount in USD.")
    micro = amount * MICRO_PER_USD
    if micro != micro.to_integral_value():
        raise AmountError("Amounts have at most 6 decimals (one micro-USD).")
    return int(micro)


def micro_to_usd(micro: int) -> Decimal:
    """Return integer micro-USD as a Decimal of USD with exactly 6 decimals."""
    return (Decimal(micro) / MICRO_PER_USD).quantize(_SIX_PLACES)


def micro_to_json(micro: int) -> float | int:
    """Return micro-USD as the JSON number the quota API shows (USD, up to 6 decimals).

    The float is built from the exact 6-decimal string, so it prints back as that string.
    """
    usd = micro_to_usd(micro)
    return int(usd) if usd == usd.to_integral_value() else float(str(usd))


def format_usd(micro: int) -> str:
    """Return micro-USD for display: `$12.50`, `$0.001237`, `-$3.00`."""
    usd = micro_to_usd(abs(micro))
    text = f"{usd:f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    fraction = fraction.ljust(2, "0")
    sign = "-" if micro < 0 else ""
    return f"{sign}${int(whole):,}.{fraction}"


def ceil_micro(value: Decimal) -> int:
    """Return a Decimal amount of micro-USD rounded up to a whole micro-USD."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))
