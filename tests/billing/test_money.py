"""USD text and numbers into micro-USD: plain ASCII decimals, bounded."""

from decimal import Decimal

import pytest
from django.template import Context, Template

from core.money import (
    MAX_AMOUNT_USD,
    AmountError,
    format_owed,
    format_usd,
    format_usd_exact,
    usd_to_micro,
)
from core.templatetags.money import usd


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


# --- the display rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("micro", "shown"),
    [
        (0, "$0.00"),
        (1, "$0.000001"),  # the smallest amount there is
        (158, "$0.00015"),  # two significant digits below a cent, rounded down
        (5_834, "$0.0058"),
        (9_999, "$0.0099"),  # never rounded up to a cent
        (10_000, "$0.01"),
        (999_999, "$0.99"),
        (7_999_417, "$7.99"),  # a balance is never shown larger than it is
        (1_234_500_000, "$1,234.50"),
        (10_000_000_000, "$10,000.00"),
        (-1_234_567, "\u2212$1.24"),  # a debt is never shown smaller than it is
        (-5_834, "\u2212$0.0059"),
    ],
)
def test_amounts_read_by_the_one_display_rule(micro, shown):
    assert format_usd(micro) == shown


def test_what_is_owed_reads_as_a_positive_amount_never_less_than_it_is():
    assert format_owed(1_234_567) == "$1.24"
    assert format_owed(1_250_000) == "$1.25"


@pytest.mark.parametrize(
    ("micro", "exact"),
    [(7_999_417, "$7.999417"), (5_834, "$0.005834"), (-3_000_000, "-$3.00"), (0, "$0.00")],
)
def test_the_exact_amount_stays_available(micro, exact):
    assert format_usd_exact(micro) == exact


def test_the_template_filter_shows_the_rule_and_keeps_the_exact_amount_in_the_title():
    assert usd(7_999_417) == '<span class="money" title="$7.999417">$7.99</span>'
    assert usd(2_500_000) == '<span class="money">$2.50</span>'
    assert usd(-1_250_000) == '<span class="money owed">\u2212$1.25</span>'
    assert usd(None) == ""


def test_templates_show_amounts_and_prices_from_micro_usd_with_one_filter_family():
    template = Template(
        "{% load money %}{{ balance|usd }} {{ debt|owed }} {{ price|usd_exact }} "
        '{{ no_price|usd_exact|default:"—" }}'
    )
    context = {"balance": 7_999_417, "debt": 1_234_567, "price": 75_000, "no_price": None}

    assert template.render(Context(context)) == (
        '<span class="money" title="$7.999417">$7.99</span> '
        '<span class="money owed" title="$1.234567">$1.24</span> $0.075 —'
    )
