"""`GET /api/v1/pricing`: the pricing page as JSON, public."""

from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.money import micro_to_usd

from . import selectors
from .display import model_prices
from .models import CatalogModel, Vendor
from .pricing import UNIT_CHARACTER, UNIT_IMAGE, UNIT_SECOND


def _usd(**kwargs):
    return serializers.DecimalField(
        max_digits=24, decimal_places=6, coerce_to_string=False, allow_null=True, **kwargs
    )


class PricingEntrySerializer(serializers.Serializer):
    model = serializers.CharField(help_text="The model name to send as `model`.")
    vendor = serializers.CharField()
    kind = serializers.ChoiceField(choices=CatalogModel.Kind.values)
    coming_soon = serializers.BooleanField(
        help_text="True for kinds the relay cannot call yet (video and music, which need "
        "the vendors' task APIs): listed with their prices, absent from `/v1/models`."
    )
    context_window = serializers.IntegerField(allow_null=True)
    group = serializers.CharField(help_text="The pricing group these prices are for.")
    group_ratio = _usd()
    model_ratio = _usd(help_text="1.0 = $2 per 1M input tokens; null for per-call models.")
    completion_ratio = _usd(help_text="Output tokens cost this many times input tokens.")
    cached_ratio = _usd(help_text="Cached input tokens cost this share of input tokens.")
    input_per_1m = _usd(help_text="USD per 1M input tokens for this group.")
    output_per_1m = _usd(help_text="USD per 1M output tokens for this group.")
    cached_input_per_1m = _usd(help_text="USD per 1M cached input tokens for this group.")
    per_call = _usd(help_text="USD per call for per-call models, else null.")
    per_image = serializers.DictField(
        child=serializers.DecimalField(max_digits=24, decimal_places=6, coerce_to_string=False),
        allow_null=True,
        help_text='USD per image by size and quality ("*": any other image; "hd 1024x1792": '
        "that quality and size), for models priced per image, else null.",
    )
    per_1m_characters = _usd(help_text="USD per 1M characters spoken (/v1/audio/speech).")
    per_minute = _usd(help_text="USD per minute of audio transcribed, billed by the second.")


def _in_usd(micro: int | None):
    return None if micro is None else micro_to_usd(micro)


def pricing_entries(*, user, vendor: str = "", kind: str = "") -> list[dict]:
    group = selectors.pricing_group_of(user)
    entries = []
    for model in selectors.catalog_model_list(vendor=vendor, kind=kind, line=group):
        prices = model_prices(model, group.group_ratio)
        per_token = model.model_ratio is not None
        per_image = {
            price.key: micro_to_usd(price.micro)
            for price in prices.per_unit
            if price.unit == UNIT_IMAGE
        }
        per_unit = {price.unit: price.micro for price in prices.per_unit}
        entries.append(
            {
                "model": model.name,
                "vendor": model.vendor.name,
                "kind": model.kind,
                "coming_soon": model.is_coming_soon,
                "context_window": model.context_window,
                "group": group.name,
                "group_ratio": group.group_ratio,
                "model_ratio": model.model_ratio,
                "completion_ratio": model.completion_ratio if per_token else None,
                "cached_ratio": model.cached_ratio,
                "input_per_1m": _in_usd(prices.input_per_1m),
                "output_per_1m": _in_usd(prices.output_per_1m),
                "cached_input_per_1m": _in_usd(prices.cached_input_per_1m),
                "per_call": _in_usd(prices.per_call),
                "per_image": per_image or None,
                "per_1m_characters": _in_usd(per_unit.get(UNIT_CHARACTER)),
                "per_minute": _in_usd(per_unit.get(UNIT_SECOND)),
            }
        )
    return entries


class PricingView(APIView):
    """The price of every enabled model the caller's line may call (the default line's
    when anonymous)."""

    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="pricing_list",
        summary="Model prices",
        parameters=[
            OpenApiParameter("vendor", str, description="Only this vendor (e.g. `openai`)."),
            OpenApiParameter("kind", str, description="Only this kind (e.g. `chat`)."),
        ],
        responses=PricingEntrySerializer(many=True),
        auth=[],
    )
    def get(self, request: Request) -> Response:
        vendor = request.query_params.get("vendor", "")
        kind = request.query_params.get("kind", "")
        if kind and kind not in CatalogModel.Kind.values:
            raise serializers.ValidationError(
                {
                    "kind": gettext("Unknown kind. One of: %(kinds)s.")
                    % {"kinds": ", ".join(CatalogModel.Kind.values)}
                }
            )
        if vendor and not Vendor.objects.filter(name=vendor).exists():
            raise serializers.ValidationError({"vendor": gettext("No vendor has that name.")})
        entries = pricing_entries(user=request.user, vendor=vendor, kind=kind)
        return Response(PricingEntrySerializer(entries, many=True).data)
