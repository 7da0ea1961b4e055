"""The console's Logs page, its CSV export and the JSON its charts read."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET

from accounts.http import ConsoleRequest
from core.inputs import ascii_int
from core.money import micro_to_json
from core.times import next_daily_run
from logs import selectors
from logs.breakdown import cost_breakdown
from logs.export import csv_lines
from logs.forms import LogFilterForm, LogFilters

CHART_MINUTES = {"hour": 60, "day": 1440}
CHART_DAYS = (7, 30, 90)


def log_context(form: LogFilterForm, filters: LogFilters) -> dict:
    """Return the rows, cursors, breakdowns and totals the results fragment shows.

    Totals the rollups answer (every console filter mix) come with the page; one
    that needs a bounded raw read gets its totals from `logs_totals` after the page
    has shown.
    """
    page = selectors.log_page(filters=filters, cursor=form.cleaned_data.get("cursor"))
    totals = None
    if selectors.totals_from_rollups(filters):
        totals = selectors.log_totals(filters=filters)
    return {
        "page": page,
        "rows": [(row, cost_breakdown(row), row.pk in page.new_ip_log_ids) for row in page.rows],
        "totals": totals,
        "filters": filters,
        "refused": selectors.refusal_count(filters=filters),
    }


def _query_without_cursor(request: ConsoleRequest) -> str:
    query = request.GET.copy()
    query.pop("cursor", None)
    return query.urlencode()


@login_required
@require_GET
def logs_page(request: ConsoleRequest) -> HttpResponse:
    """List the user's requests with filters, totals and charts (results only for htmx)."""
    form = LogFilterForm(request.GET or {"range": "24h"}, user_id=request.user.pk)
    context: dict = {
        "form": form,
        "query": _query_without_cursor(request),
        "retention_days": settings.LOG_RETENTION_DAYS,
        # Retention runs in the platform's maintenance window; the page says when in the
        # reader's zone (the template shows it in the active one).
        "retention_at": next_daily_run("logs-retention"),
    }
    status = 200
    results = "logs/_results.html"
    if not form.is_valid():
        context["errors"] = form.error_messages_list()
        status = 400
    elif form.cleaned_data["status"] == "refused":
        filters = form.filters()
        context |= {"refusals": selectors.refusal_list(filters=filters), "filters": filters}
        results = "logs/_refusals.html"
    else:
        context |= log_context(form, form.filters())
    context["results_template"] = results
    template = results if request.htmx else "logs/page.html"
    return render(request, template, context, status=status)


@login_required
@require_GET
def logs_totals(request: ConsoleRequest) -> HttpResponse:
    """Render the totals of the filtered range (loaded after the page when they are slow)."""
    form = LogFilterForm(request.GET, user_id=request.user.pk)
    if not form.is_valid():
        return render(
            request,
            "logs/_results.html",
            {"errors": form.error_messages_list()},
            status=400,
        )
    totals = selectors.log_totals(filters=form.filters())
    return render(request, "logs/_totals.html", {"totals": totals})


@login_required
@require_GET
def logs_csv(request: ConsoleRequest) -> HttpResponse | StreamingHttpResponse:
    """Stream the filtered range as CSV."""
    form = LogFilterForm(request.GET, user_id=request.user.pk)
    if not form.is_valid():
        return HttpResponse(
            "\n".join(form.error_messages_list()) + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    return csv_response(form.filters())


def csv_response(filters: LogFilters) -> StreamingHttpResponse:
    """Return a streamed CSV download of the rows matching `filters`, times in the active
    zone (the reader's; UTC from the API) with their offsets."""
    # The zone is taken now: the rows are written after the view (and its zone) returned.
    zone = timezone.get_current_timezone()
    response = StreamingHttpResponse(csv_lines(filters=filters, zone=zone), content_type="text/csv")
    stamp = timezone.localtime(timezone.now(), zone).strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="request-logs-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _choice(value: str, allowed: dict | tuple, default: str) -> str | None:
    value = value or default
    return value if value in allowed else None


@login_required
@require_GET
def chart_usage_per_minute(request: ConsoleRequest) -> JsonResponse:
    """Requests (RPM) and tokens (TPM) per minute over the last hour or day."""
    window = _choice(request.GET.get("window", ""), CHART_MINUTES, "hour")
    if window is None:
        return JsonResponse({"error": "window is “hour” or “day”."}, status=400)
    series = selectors.usage_per_minute(user_id=request.user.pk, minutes=CHART_MINUTES[window])
    return JsonResponse(
        {
            "labels": series["labels"],
            "datasets": [
                {"label": gettext("Requests per minute"), "data": series["requests"], "axis": "y"},
                {"label": gettext("Tokens per minute"), "data": series["tokens"], "axis": "y1"},
            ],
        }
    )


def _days(request: ConsoleRequest) -> int | None:
    days = ascii_int(request.GET.get("days", "7"))
    return days if days in CHART_DAYS else None


@login_required
@require_GET
def chart_by_model(request: ConsoleRequest) -> JsonResponse:
    """Spend (USD) or requests per model per day over 7, 30 or 90 days."""
    days = _days(request)
    measure = request.GET.get("measure", "cost")
    if days is None or measure not in ("cost", "requests"):
        return JsonResponse(
            {"error": "days is 7, 30 or 90; measure is “cost” or “requests”."}, status=400
        )
    series = selectors.usage_by_model_per_day(user_id=request.user.pk, days=days)
    datasets = []
    for model, values in zip(series["models"], series[measure], strict=True):
        data = [micro_to_json(value) for value in values] if measure == "cost" else values
        datasets.append({"label": model, "data": data})
    return JsonResponse(
        {"labels": series["labels"], "datasets": datasets, "stacked": True, "unit": measure}
    )


@login_required
@require_GET
def chart_by_token(request: ConsoleRequest) -> JsonResponse:
    """Spend (USD) per token over 7, 30 or 90 days."""
    days = _days(request)
    if days is None:
        return JsonResponse({"error": "days is 7, 30 or 90."}, status=400)
    rows = selectors.spend_by_token(user_id=request.user.pk, days=days)
    return JsonResponse(
        {
            "labels": [row["name"] for row in rows],
            "datasets": [
                {
                    "label": gettext("Spend (USD)"),
                    "data": [micro_to_json(row["cost"]) for row in rows],
                }
            ],
            "unit": "cost",
            "kind": "bar",
        }
    )


@login_required
@require_GET
def chart_errors(request: ConsoleRequest) -> JsonResponse:
    """Failed and refused requests per hour over the last 24 hours or 7 days."""
    hours = {"24h": 24, "7d": 168}.get(request.GET.get("window", "24h"))
    if hours is None:
        return JsonResponse({"error": "window is “24h” or “7d”."}, status=400)
    series = selectors.errors_per_hour(user_id=request.user.pk, hours=hours)
    return JsonResponse(
        {
            "labels": series["labels"],
            "datasets": [
                {"label": gettext("Failed (error answer)"), "data": series["failed"]},
                {"label": gettext("Refused (never forwarded)"), "data": series["refused"]},
            ],
            "stacked": True,
            "unit": "requests",
        }
    )


@login_required
@require_GET
def chart_home(request: ConsoleRequest) -> JsonResponse:
    """Spend (USD) per day over the last 30 days, a line for the console home."""
    usage = selectors.home_usage(user_id=request.user.pk)
    return JsonResponse(
        {
            "labels": usage.spend_per_day["labels"],
            "datasets": [
                {
                    "label": gettext("Spend (USD)"),
                    "data": [micro_to_json(value) for value in usage.spend_per_day["cost"]],
                }
            ],
            "unit": "cost",
            "kind": "line",
        }
    )
