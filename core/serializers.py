"""Serializer fields every app's API may use."""

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from core.money import AmountError, micro_to_usd, usd_to_micro


class UsdField(serializers.DecimalField):
    """Integer micro-USD inside, USD with 6 decimals (a string) in JSON."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=18, decimal_places=6, **kwargs)

    def to_representation(self, value: Any) -> Any:
        return super().to_representation(micro_to_usd(int(value)))

    def to_internal_value(self, data: Any) -> Any:
        # ASCII only: DRF's own parse reads other scripts' digits ("٣" as 3).
        if isinstance(data, str) and not data.isascii():
            self.fail("invalid")
        usd: Decimal = super().to_internal_value(data)
        try:
            return usd_to_micro(usd)
        except AmountError as error:
            raise serializers.ValidationError(str(error)) from error
