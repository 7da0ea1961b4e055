"""Console API for money: the account summary and the ledger."""

from decimal import Decimal
from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from billing.models import LedgerEntry
from billing.money import AmountError, micro_to_usd, usd_to_micro
from billing.selectors import account_for_user, ledger_entry_list


class UsdField(serializers.DecimalField):
    """Integer micro-USD inside, USD with 6 decimals (a string) in JSON."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=18, decimal_places=6, **kwargs)

    def to_representation(self, value: Any) -> Any:
        return super().to_representation(micro_to_usd(int(value)))

    def to_internal_value(self, data: Any) -> Any:
        usd: Decimal = super().to_internal_value(data)
        try:
            return usd_to_micro(usd)
        except AmountError as error:
            raise serializers.ValidationError(str(error)) from error


class AccountSerializer(serializers.Serializer):
    balance = UsdField(read_only=True)
    reserved = UsdField(read_only=True, help_text="Held by requests in flight.")
    used = UsdField(read_only=True)
    recharged = UsdField(read_only=True)
    request_count = serializers.IntegerField(read_only=True)


class LedgerEntrySerializer(serializers.ModelSerializer):
    amount = UsdField(read_only=True)
    balance_after = UsdField(read_only=True)

    class Meta:
        model = LedgerEntry
        fields = ["id", "created_at", "kind", "amount", "balance_after", "reason"]
        read_only_fields = fields


class AccountView(APIView):
    """The signed-in user's balance and lifetime totals."""

    @extend_schema(responses=AccountSerializer)
    def get(self, request: Request) -> Response:
        account = account_for_user(user_id=cast(User, request.user).pk)
        return Response(AccountSerializer(account).data)


class LedgerListView(generics.ListAPIView):
    """The signed-in user's ledger entries, newest first."""

    serializer_class = LedgerEntrySerializer

    def get_queryset(self):
        return ledger_entry_list(user_id=cast(User, self.request.user).pk)
