"""Console API for money: the account summary and the ledger."""

from typing import cast

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from billing.models import LedgerEntry
from billing.selectors import account_for_user, ledger_entry_list
from core.serializers import UsdField


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
