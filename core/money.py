"""The one place that converts integer micro-USD to and from USD for people and JSON.

Inside Comet every amount is an integer of micro-USD (1 USD = 1,000,000).
"""

from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from django.utils.translation import gettext

from core.inputs import ascii_decimal

MICRO_PER_USD = 1_000_000
_SIX_PLACES = Decimal("0.000001")
# The most one amount may be: far above any real top-up, quota or adjustment, and far
# below what the bigint columns of micro-USD hold (9.2e12 USD) when balances add up.
MAX_AMOUNT_USD = Decimal(1_000_000_000)


class AmountError(ValueError):
    """A USD amount that cannot be turned into whole micro-USD."""


def usd_to_micro(value: str | Decimal | int) -> int:
    """Return `value` (USD) as integer micro-USD; refuse more than 6 decimals or junk.

    Text is plain ASCII decimal notation ("25", "-3.50"): no exponent, "inf", "nan"
    or other scripts' digits. No amount is larger than MAX_AMOUNT_USD either way.
    """
    amount = ascii_decimal(value.strip(), signed=True) if isinstance(value, str) else value
    if isinstance(amount, int):
        amount = Decimal(amount)
    if amount is None or not amount.is_finite():
        raise AmountError(gettext("“%(value)s” is not an amount in USD.") % {"value": value})
    if abs(amount) > MAX_AMOUNT_USD:
        raise AmountError(
            gettext("Amounts are at most %(maximum)s.") % {"maximum": f"${MAX_AMOUNT_USD:,}"}
        )
    micro = amount * MICRO_PER_USD
    if micro != micro.to_integral_value():
        raise AmountError(gettext("Amounts have at most 6 decimals (one micro-USD)."))
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


MINUS = "\u2212"
_CENT = 10_000  # micro-USD


def format_usd(micro: int) -> str:
    """Return micro-USD as people read it: the console's one money display rule.

    Two decimals with thousands separators (`$10,000.00`); an amount below a cent
    in two significant digits (`$0.0058`, at most six decimals); a negative amount
    with a minus sign (U+2212, `-$1.24` as shown). Never rounded up: $7.999417 reads $7.99, so a
    balance is never shown larger than it is (and a debt never smaller). The exact
    value is `format_usd_exact`.
    """
    # Below a cent |micro| has at most 4 digits: keep its first two, at most 6 places.
    places = min(6, 8 - len(str(abs(micro)))) if 0 < abs(micro) < _CENT else 2
    usd = (Decimal(micro) / MICRO_PER_USD).quantize(Decimal(1).scaleb(-places), ROUND_FLOOR)
    text = f"${abs(usd):,.{places}f}"
    return f"{MINUS}{text}" if usd < 0 else text


def format_owed(owed: int) -> str:
    """Return what an account owes (a positive amount) as people read it, never less."""
    return format_usd(-owed).removeprefix(MINUS)


def format_usd_exact(micro: int) -> str:
    """Return micro-USD to the micro-dollar: `$12.50`, `$0.001237`, `-$3.00`."""
    usd = micro_to_usd(abs(micro))
    text = f"{usd:f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    fraction = fraction.ljust(2, "0")
    sign = "-" if micro < 0 else ""
    return f"{sign}${int(whole):,}.{fraction}"


# Currencies Stripe charges in whole units (no minor unit): amounts are sent as is.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv"}
    | {"xaf", "xof", "xpf"}
)
_CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cny": "¥", "krw": "₩"}


def minor_exponent(currency: str) -> int:
    """Return how many decimals the currency's minor unit has for Stripe (0 or 2)."""
    return 0 if currency.lower() in ZERO_DECIMAL_CURRENCIES else 2


def charge_minor(
    *, credit: int, price_per_usd: Decimal, discount_percent: Decimal, currency: str
) -> int:
    """Return what `credit` micro-USD costs, in the currency's minor unit (Stripe's amount).

    The one rounding rule of a recharge: credit * price * (100 - discount) / 100,
    rounded half up to a whole minor unit, computed in Decimal from exact values.
    """
    gross = Decimal(credit) / MICRO_PER_USD * price_per_usd
    net = gross * (Decimal(100) - discount_percent) / Decimal(100)
    minor = net * (Decimal(10) ** minor_exponent(currency))
    return int(minor.to_integral_value(rounding=ROUND_HALF_UP))


def format_minor(amount_minor: int, currency: str) -> str:
    """Return a charge for display: `$95.00`, `¥1,500`, `95.00 CHF`."""
    exponent = minor_exponent(currency)
    value = Decimal(amount_minor).scaleb(-exponent)
    text = f"{value:,.{exponent}f}"
    symbol = _CURRENCY_SYMBOLS.get(currency.lower())
    return f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
