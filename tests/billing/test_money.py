"""USD text and numbers into micro-USD: plain ASCII decimals, bounded."""

from decimal import Decimal

import pytest

from billing.money import MAX_AMOUNT_USD, AmountError, usd_to_micro


@pytest.mark.parametrize(
    ("value", "micro"),
    [("25", 25_000_000), (" -3.50 ", -3_500_000), ("0.000001", 1), (Decimal("7.25"), 7_250_000)],
)
def test_amounts_in_usd_become_micro_usd(value, micro):
    assert usd_to_micro(value) == micro


@pytest.mark.parametrize(
    "value",
    [
        "1e309",
        "1e20",
        "1E3",
        "inf",
        "-Infinity",
        "nan",
        "٣",
        "²",
        "\uff15",
        "5\x00",
        "",
        "0.0000001",
        Decimal("1e309"),
        Decimal("Infinity"),
        Decimal("NaN"),
        10**30,
        -(10**30),
        str(MAX_AMOUNT_USD + 1),
    ],
)
def test_junk_and_amounts_no_column_can_hold_are_refused(value):
    with pytest.raises(AmountError):
        usd_to_micro(value)


def test_the_largest_amount_still_fits():
    assert usd_to_micro(str(MAX_AMOUNT_USD)) == int(MAX_AMOUNT_USD) * 1_000_000
    assert usd_to_micro(-MAX_AMOUNT_USD) == -int(MAX_AMOUNT_USD) * 1_000_000
