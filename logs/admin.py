from django.contrib import admin
from django.http import HttpRequest

from logs.models import RequestLog


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "token_name", "model", "cost", "status_code", "client_ip")
    list_filter = ("status_code", "is_stream")
    search_fields = ("request_id", "user__email", "model")
    list_select_related = ("user",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
