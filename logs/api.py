"""Console API for the request log: `GET /api/v1/logs` and `GET /api/v1/logs/export.csv`.

Both take the Logs page's filters as query parameters and answer only the
signed-in user's rows.
"""

from typing import cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from core.serializers import UsdField
from logs import selectors
from logs.forms import LogFilterForm
from logs.views import csv_response

FILTER_PARAMETERS = [
    OpenApiParameter(
        "range",
        str,
        enum=["1h", "24h", "7d", "30d", "custom"],
        description="A preset time range ending now (default 24h), or custom with start/end.",
    ),
    OpenApiParameter(
        "start",
        str,
        description="Custom range start: UTC (2026-12-01T14:30), or with its offset "
        "(2026-12-01T22:30+08:00, the `+` written %2B).",
    ),
    OpenApiParameter(
        "end", str, description="Custom range end, UTC or with its offset (default: now)."
    ),
    OpenApiParameter("token", int, description="One of your token ids."),
    OpenApiParameter("model", str, description="Exact model name."),
    OpenApiParameter("ip", str, description="Client IP address (IPv4 or IPv6)."),
    OpenApiParameter("status", str, description="“ok”, “error” or an HTTP status code."),
]
CURSOR_PARAMETER = OpenApiParameter(
    "cursor", str, description="`next_cursor` / `previous_cursor` of a previous page."
)


class LogRowSerializer(serializers.Serializer):
    created_at = serializers.DateTimeField()
    request_id = serializers.CharField()
    token_id = serializers.IntegerField(allow_null=True)
    token_name = serializers.CharField()
    model = serializers.CharField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    cost = UsdField(help_text="USD charged for this request.")
    ip = serializers.IPAddressField(source="client_ip")
    status = serializers.IntegerField(source="status_code")
    error_code = serializers.CharField()
    latency_ms = serializers.IntegerField()
    first_token_ms = serializers.IntegerField(allow_null=True)
    stream = serializers.BooleanField(source="is_stream")
    is_new_ip = serializers.BooleanField(
        help_text="The first request from this IP on a token that was used from others before."
    )


class LogTotalsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = UsdField()
    is_exact = serializers.BooleanField(
        help_text="False when the figures are lower bounds: a filter no rollup answers "
        "(admins' channel filter), or a partial minute or hour at an edge of the range, "
        f"held more than the {selectors.RAW_TOTALS_LIMIT:,} matching rows a raw read counts."
    )


class LogPageSerializer(serializers.Serializer):
    data = LogRowSerializer(many=True)  # type: ignore[assignment]
    next_cursor = serializers.CharField(allow_null=True, help_text="Older rows; null at the end.")
    previous_cursor = serializers.CharField(allow_null=True, help_text="Newer rows.")
    totals = LogTotalsSerializer()


def _form(request: Request) -> LogFilterForm:
    form = LogFilterForm(request.query_params, user_id=cast(User, request.user).pk)
    if not form.is_valid():
        raise serializers.ValidationError(
            {
                ("non_field_errors" if name == "__all__" else name): [str(e) for e in errors]
                for name, errors in form.errors.items()
            }
        )
    return form


class LogListView(APIView):
    """The signed-in user's request log, newest first, 50 rows a page."""

    @extend_schema(parameters=[*FILTER_PARAMETERS, CURSOR_PARAMETER], responses=LogPageSerializer)
    def get(self, request: Request) -> Response:
        form = _form(request)
        filters = form.filters()
        page = selectors.log_page(filters=filters, cursor=form.cleaned_data.get("cursor"))
        for row in page.rows:
            row.is_new_ip = row.pk in page.new_ip_log_ids  # type: ignore[attr-defined]
        totals = selectors.log_totals(filters=filters)
        return Response(
            {
                "data": LogRowSerializer(page.rows, many=True).data,
                "next_cursor": page.older,
                "previous_cursor": page.newer,
                "totals": LogTotalsSerializer(totals).data,
            }
        )


class CsvRenderer(BaseRenderer):
    """Lets `Accept: text/csv` through content negotiation.

    The CSV itself is a streamed response that no renderer touches; this renders
    only error bodies, in the API's JSON error format.
    """

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return JSONRenderer().render(data)


class LogExportView(APIView):
    """The signed-in user's request log of a filtered range as CSV, streamed."""

    renderer_classes = [JSONRenderer, CsvRenderer]

    @extend_schema(
        parameters=FILTER_PARAMETERS,
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV")},
    )
    def get(self, request: Request):
        return csv_response(_form(request).filters())
