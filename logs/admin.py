from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from core.admin import DollarsAdmin
from logs import selectors
from logs.breakdown import cost_breakdown
from logs.forms import AdminLogFilterForm
from logs.models import Refusal, RequestLog


@admin.register(RequestLog)
class RequestLogAdmin(DollarsAdmin):
    """Every user's requests with the console's filters plus user and channel.

    The stock change list counts and offsets over the whole table; this one reads
    keyset pages through `logs.selectors` like the console. Each channel's error rate
    is on the channel list (`relay.admin`).
    """

    list_display = ("created_at", "user", "token_name", "model", "cost", "status_code", "client_ip")
    money_fields = ("cost", "price_per_call")
    list_select_related = ("user",)
    readonly_fields = [field.name for field in RequestLog._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        form = AdminLogFilterForm(request.GET or {"range": "24h"})
        query = request.GET.copy()
        query.pop("cursor", None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Request logs"),
            "form": form,
            "query": query.urlencode(),
            "retention_days": settings.LOG_RETENTION_DAYS,
        }
        status = 200
        if form.is_valid():
            filters = form.admin_filters()
            page = selectors.log_page(
                filters=filters, cursor=form.cleaned_data.get("cursor"), mark_new_ips=False
            )
            rows = list(page.rows)
            users = {
                user.pk: user
                for user in User.objects.filter(pk__in={row.user_id for row in rows}).only("email")
            }
            context |= {
                "page": page,
                "rows": [(row, users.get(row.user_id), cost_breakdown(row)) for row in rows],
                "totals": selectors.log_totals(filters=filters),
                "filters": filters,
            }
        else:
            context["errors"] = form.error_messages_list()
            status = 400
        return TemplateResponse(
            request, "admin/logs/requestlog/change_list.html", context, status=status
        )


@admin.register(Refusal)
class RefusalAdmin(admin.ModelAdmin):
    """Requests refused after their token was known: one row per token, code and second."""

    list_display = ("second", "user", "token_name", "status_code", "error_code", "model", "count")
    list_filter = ("status_code", "error_code")
    list_select_related = ("user",)
    # The stock count over a large table is slow; the list is newest first by index.
    show_full_result_count = False
    ordering = ("-second", "-id")
    readonly_fields = [field.name for field in Refusal._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
