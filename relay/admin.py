from django import forms
from django.contrib import admin
from django.utils import timezone

from .models import Channel
from .routing import routing_table_expire
from .services import channel_set_api_key


class ChannelForm(forms.ModelForm):
    base_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=Channel._meta.get_field("base_url").help_text,
    )
    api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted and never shown again; leave empty to keep the current key.",
    )

    class Meta:
        model = Channel
        fields = [
            "name",
            "kind",
            "base_url",
            "api_key",
            "served_models",
            "model_mapping",
            "pricing_groups",
            "priority",
            "weight",
            "connect_timeout_seconds",
            "read_timeout_seconds",
            "status",
        ]


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = (
        "name",
        "kind",
        "status",
        "priority",
        "weight",
        "consecutive_failures",
        "last_failure_at",
        "api_key_display",
    )
    list_filter = ("kind", "status")
    search_fields = ("name", "base_url")
    filter_horizontal = ("pricing_groups",)
    readonly_fields = (
        "api_key_display",
        "consecutive_failures",
        "total_failures",
        "last_error",
        "last_failure_at",
        "disabled_at",
        "created_at",
        "updated_at",
    )

    @admin.display(description="API key")
    def api_key_display(self, channel: Channel) -> str:
        return f"…{channel.api_key_last4}" if channel.api_key_last4 else "—"

    def save_model(self, request, obj: Channel, form: ChannelForm, change: bool) -> None:
        api_key = form.cleaned_data.get("api_key")
        if api_key:
            channel_set_api_key(channel=obj, api_key=api_key, save=False)
        if "status" in form.changed_data:
            # Enabling by hand starts a clean count: otherwise the next failure would
            # disable the channel again at once.
            if obj.status == Channel.Status.ENABLED:
                obj.consecutive_failures = 0
                obj.disabled_at = None
            else:
                obj.disabled_at = timezone.now()
        super().save_model(request, obj, form, change)
        routing_table_expire()
