"""The shared parsers of request input: ASCII digits only, JSON that code can walk."""

from decimal import Decimal

import pytest

from core.inputs import (
    BIGINT_MAX,
    MAX_JSON_DEPTH,
    ascii_decimal,
    ascii_int,
    json_loads,
    storable_text_problem,
)

UNICODE_DIGITS = ["²", "①", "٣", "\uff11", "1²", "٣٠", "\U0001d7cf"]


@pytest.mark.parametrize("text", UNICODE_DIGITS)
def test_unicode_digits_are_not_numbers(text):
    assert text.isdigit()  # what the old checks relied on
    assert ascii_int(text) is None
    assert ascii_decimal(text) is None


@pytest.mark.parametrize(
    "text", ["", " 1", "1 ", "+1", "-1", "1.0", "1e3", "0x10", "1_000", "\x00", "1\x00"]
)
def test_only_plain_ascii_digits_are_whole_numbers(text):
    assert ascii_int(text) is None


def test_whole_numbers_are_bounded_by_what_a_bigint_holds():
    assert ascii_int("0") == 0
    assert ascii_int("007") == 7
    assert ascii_int(str(BIGINT_MAX)) == BIGINT_MAX
    assert ascii_int(str(BIGINT_MAX + 1)) is None
    assert ascii_int("9" * 5000) is None
    assert ascii_int("0" * 30 + "5") == 5
    assert ascii_int("600", maximum=599) is None


@pytest.mark.parametrize("text", ["1e309", "inf", "nan", "NaN", "Infinity", "1e20", "1,000", "$5"])
def test_decimals_are_plain_notation_only(text):
    assert ascii_decimal(text) is None


def test_decimals_in_plain_notation():
    assert ascii_decimal("25") == Decimal(25)
    assert ascii_decimal("25.50") == Decimal("25.50")
    assert ascii_decimal(".5") == Decimal("0.5")
    assert ascii_decimal("-3.5") is None
    assert ascii_decimal("-3.5", signed=True) == Decimal("-3.5")


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
        b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
        b'{"a": "\xff"}',
        b"{not json",
    ],
)
def test_json_that_cannot_be_used_is_a_value_error(raw):
    with pytest.raises(ValueError):  # noqa: PT011 (json and depth errors word it differently)
        json_loads(raw)


def test_json_as_deep_as_allowed_is_parsed():
    raw = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_loads(raw) is not None
    assert json_loads(b'{"model": "gpt", "messages": [{"content": [{"text": "hi"}]}]}')


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "\ud800", "x\udfff"])
def test_text_postgresql_cannot_store_is_named(text):
    assert storable_text_problem(text)


@pytest.mark.parametrize("text", ["gpt-4o", "²", "模型", "😀"])
def test_ordinary_text_is_storable(text):
    assert storable_text_problem(text) is None
