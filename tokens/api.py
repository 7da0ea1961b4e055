"""Console API for API tokens (`/api/tokens/`)."""

from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Token, User
from accounts.selectors import token_list
from accounts.tokens import networks_parse
from core.inputs import ascii_int
from core.serializers import UsdField
from tokens.services import token_create, token_delete, token_roll, token_set_enabled, token_update
from tokens.views import signed_in_recently


class TokenSerializer(serializers.ModelSerializer):
    masked_key = serializers.CharField(read_only=True)
    status = serializers.CharField(read_only=True)
    quota_remaining = UsdField(
        allow_null=True,
        required=False,
        min_value=0,
        help_text="USD; null = unlimited, 0 = query-only.",
    )
    used = UsdField(read_only=True)
    quota_alert_threshold = UsdField(
        allow_null=True,
        required=False,
        help_text="USD; one email when the quota left falls below it; null = none.",
    )
    allowed_models = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False
    )
    allowed_networks = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False
    )

    class Meta:
        model = Token
        fields = [
            "id",
            "name",
            "masked_key",
            "status",
            "is_enabled",
            "expires_at",
            "quota_remaining",
            "quota_alert_threshold",
            "used",
            "request_count",
            "allowed_models",
            "allowed_networks",
            "concurrency_limit",
            "rpm_limit",
            "last_used_at",
            "last_used_ip",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "request_count",
            "last_used_at",
            "last_used_ip",
            "created_at",
        ]

    def validate_allowed_networks(self, value: list[str]) -> list[str]:
        try:
            networks_parse(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from error
        return value


class TokenCreatedSerializer(TokenSerializer):
    key = serializers.CharField(read_only=True, help_text="The full key; shown only this once.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "key"]


class TokenRolledSerializer(TokenSerializer):
    key = serializers.CharField(
        read_only=True, help_text="The token's new key; shown only this once."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "key"]


def _service_arguments(data: dict[str, Any], token: Token | None = None) -> dict[str, Any]:
    def pick(name: str, default: Any) -> Any:
        if name in data:
            return data[name]
        return getattr(token, name) if token is not None else default

    return {
        "name": pick("name", ""),
        "quota_remaining": pick("quota_remaining", None),
        "expires_at": pick("expires_at", None),
        "allowed_models": pick("allowed_models", []),
        "allowed_networks": pick("allowed_networks", []),
        # None: 100, or the account's limit if lower (`token_create`).
        "concurrency_limit": pick("concurrency_limit", None),
        "rpm_limit": pick("rpm_limit", None),
        # A token made unlimited drops its quota alert unless one is given with it.
        "quota_alert_threshold": None
        if "quota_remaining" in data
        and data["quota_remaining"] is None
        and "quota_alert_threshold" not in data
        else pick("quota_alert_threshold", None),
    }


class ReauthenticationNeeded(exceptions.PermissionDenied):
    default_detail = _(
        "Creating a token needs a recent sign-in: sign in again (or re-enter your "
        "password at /accounts/reauthenticate/) and retry."
    )
    default_code = "reauthentication_required"


class RollReauthenticationNeeded(ReauthenticationNeeded):
    default_detail = _(
        "Rolling a key needs a recent sign-in: sign in again (or re-enter your "
        "password at /accounts/reauthenticate/) and retry."
    )


def _user(request: Request) -> User:
    return cast(User, request.user)


class TokenViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The signed-in user's API tokens. Other users' tokens answer 404."""

    serializer_class = TokenSerializer

    def get_queryset(self):
        return token_list(user_id=_user(self.request).pk)

    def get_object(self) -> Token:
        # Ids are ASCII digits: "٣" is not token 3, and "²" or 30 digits reach no query.
        token_id = ascii_int(self.kwargs["pk"])
        if token_id is None:
            raise exceptions.NotFound()
        self.kwargs["pk"] = token_id
        return super().get_object()

    @extend_schema(request=TokenSerializer, responses={201: TokenCreatedSerializer})
    def create(self, request: Request) -> Response:
        """Create a token; the key is in this response only. Needs a recent sign-in."""
        if not signed_in_recently(request):
            raise ReauthenticationNeeded()
        serializer = TokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            token, raw_key = token_create(
                user=_user(request),
                actor=_user(request),
                **_service_arguments(serializer.validated_data),
            )
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from error
        data = TokenCreatedSerializer(token).data | {"key": raw_key}
        return Response(data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @extend_schema(request=TokenSerializer, responses=TokenSerializer)
    def update(self, request: Request, pk: str | None = None, partial: bool = False) -> Response:
        token = self.get_object()
        serializer = TokenSerializer(token, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            token = token_update(
                token=token, actor=_user(request), **_service_arguments(data, token)
            )
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from error
        if "is_enabled" in data and data["is_enabled"] != token.is_enabled:
            token = token_set_enabled(
                token=token, is_enabled=data["is_enabled"], actor=_user(request)
            )
        return Response(TokenSerializer(token).data)

    @extend_schema(request=TokenSerializer, responses=TokenSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk=pk, partial=True)

    @extend_schema(request=None, responses={200: TokenRolledSerializer})
    @action(detail=True, methods=["post"])
    def roll(self, request: Request, pk: str | None = None) -> Response:
        """Give the token a new key, in this response only; the old key is refused within a
        second. The token keeps its id, settings, quota and usage. Needs a recent sign-in."""
        token = self.get_object()
        if not signed_in_recently(request):
            raise RollReauthenticationNeeded()
        token, raw_key = token_roll(token=token, actor=_user(request))
        data = TokenRolledSerializer(token).data | {"key": raw_key}
        return Response(data, headers={"Cache-Control": "no-store"})

    def perform_destroy(self, instance: Token) -> None:
        token_delete(token=instance, actor=_user(self.request))
