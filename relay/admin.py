import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from core.inputs import ascii_int
from models_catalog.models import CatalogModel

from .admin_fields import ApiKeysField, JsonObjectField, ModelMappingField, ServedModelsField
from .models import Channel
from .overrides import header_overrides_problems, parameter_overrides_problems
from .probe import ChannelTestResult, channel_test
from .routing import routing_table_expire
from .selectors import channel_error_rates
from .services import channel_set_api_keys, channel_status_audit

# Channels one "Test" action sends a request through (each may take up to its timeout).
MAX_CHANNELS_TESTED = 5
# Keys of a channel the channel list names by their endings.
MAX_KEY_ENDINGS_LISTED = 3


# The first Azure OpenAI API versions that send a stream's usage (`stream_options`), which
# streamed calls are billed by: older ones refuse every streamed chat completion.
AZURE_FIRST_STREAM_USAGE_VERSION = "2024-09-01"
AZURE_API_VERSION = re.compile(r"(\d{4}-\d{2}-\d{2})(-preview)?", re.ASCII)


def azure_api_version_problem(version: str) -> str:
    """Return why an Azure OpenAI channel cannot use this API version, or ""."""
    if not version:
        return _(
            "Enter the API version: Azure OpenAI refuses requests without one (e.g. 2024-10-21)."
        )
    match = AZURE_API_VERSION.fullmatch(version)
    if match is None:
        return _("An Azure OpenAI API version looks like 2024-10-21 or 2025-04-01-preview.")
    if match.group(1) < AZURE_FIRST_STREAM_USAGE_VERSION:
        return _(
            "Use 2024-10-21 or later: older Azure OpenAI API versions refuse the stream "
            "usage that streamed calls are billed by."
        )
    return ""


class ChannelForm(forms.ModelForm):
    base_url = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        label=Channel._meta.get_field("base_url").verbose_name,
        help_text=Channel._meta.get_field("base_url").help_text,
    )
    api_keys = ApiKeysField(label=gettext_lazy("API keys"), required=False)
    served_models = ServedModelsField(
        required=False,
        label=gettext_lazy("Served models"),
        help_text=gettext_lazy(
            "One model name per line, as customers ask for it (e.g. gpt-4o). A name must "
            "also be in the catalog, which prices it, before it can be called."
        ),
    )
    model_mapping = ModelMappingField(
        required=False,
        label=gettext_lazy("Model mapping"),
        help_text=gettext_lazy(
            "Only where the upstream knows a served model by another name: the requested "
            "name on the left, the name sent upstream on the right. Empty rows are ignored."
        ),
    )
    header_overrides = JsonObjectField(
        problems=header_overrides_problems,
        label=gettext_lazy("Header overrides"),
        help_text=gettext_lazy(
            "A JSON object of headers sent upstream with every request, e.g. "
            '<code>{"OpenAI-Organization": "org-123"}</code>. The key and how the request is '
            "sent (<code>Authorization</code>, <code>api-key</code>, <code>Host</code>, "
            "<code>Content-Length</code>, …) cannot be overridden."
        ),
    )
    parameter_overrides = JsonObjectField(
        problems=parameter_overrides_problems,
        label=gettext_lazy("Parameter overrides"),
        help_text=gettext_lazy(
            "A JSON object merged into every chat completion, completion and message sent "
            'upstream, in the upstream\'s format, e.g. <code>{"max_tokens": 4096}</code>: its '
            "values replace the customer's, and <code>null</code> removes a parameter. "
            "Customers are still charged for the usage the upstream reports. Not "
            "<code>model</code>, <code>stream</code> or <code>stream_options</code>."
        ),
    )

    class Meta:
        model = Channel
        fields = [
            "name",
            "kind",
            "base_url",
            "api_version",
            "api_keys",
            "served_models",
            "model_mapping",
            "header_overrides",
            "parameter_overrides",
            "pricing_groups",
            "priority",
            "weight",
            "connect_timeout_seconds",
            "read_timeout_seconds",
            "status",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        endings = list(self.instance.api_key_endings or []) if self.instance.pk else []
        self.fields["api_keys"].help_text = (
            ngettext(
                "One key, ending …%(endings)s, stored encrypted and never shown. Leave "
                "empty to keep it; type keys, one per line, to replace it. Several keys are "
                "used in turn.",
                "%(count)s keys, ending …%(endings)s, stored encrypted and never shown. "
                "Leave empty to keep them; type keys, one per line, to replace them all. "
                "They are used in turn.",
                len(endings),
            )
            % {"count": len(endings), "endings": ", …".join(endings)}
            if endings
            else _(
                "One per line; several are used in turn, and one the upstream refuses "
                "(401, 403, 429) is set aside for a while. Stored encrypted and never "
                "shown again."
            )
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        has_key = bool(cleaned.get("api_keys")) or bool(
            self.instance.pk and self.instance.encrypted_api_key
        )
        if kind and kind != Channel.Kind.MOCK and not has_key:
            self.add_error(
                "api_keys",
                _("Enter the channel's API key: the upstream refuses requests without."),
            )
        if kind == Channel.Kind.AZURE:
            problem = azure_api_version_problem(cleaned.get("api_version") or "")
            if problem:
                self.add_error("api_version", problem)
        served = cleaned.get("served_models")
        mapping = cleaned.get("model_mapping")
        if served is not None and mapping:
            unserved = [name for name in mapping if name not in served]
            if unserved:
                self.add_error(
                    "model_mapping",
                    _(
                        "Not among the served models: %(names)s. Add them to the served "
                        "models, or remove their rows."
                    )
                    % {"names": ", ".join(unserved)},
                )
        return cleaned


def _test_message(channel: Channel, result: ChannelTestResult) -> str:
    if not result.model:
        return _("%(channel)s: %(error)s") % {"channel": channel, "error": result.error}
    asked = (
        _("%(model)s (sent upstream as %(upstream)s)")
        % {"model": result.model, "upstream": result.upstream_model}
        if result.upstream_model != result.model
        else result.model
    )
    values = {
        "channel": channel,
        "model": asked,
        "ms": result.latency_ms,
        "error": result.error,
    }
    if result.ok:
        message = _("%(channel)s answered %(model)s in %(ms)s ms.") % values
    else:
        message = _("%(channel)s failed for %(model)s after %(ms)s ms: %(error)s") % values
    if result.refused_keys:
        message += " " + _("Keys refused first: %(keys)s.") % {
            "keys": ", ".join(result.refused_keys)
        }
    return message


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
        "consecutive_failures",
        "total_failures",
        "last_error",
        "last_failure_at",
        "disabled_at",
        "created_at",
        "updated_at",
    )
    actions = ["test_channels"]
    change_form_template = "admin/relay/channel/change_form.html"
    change_list_template = "admin/relay/channel/change_list.html"

    class Media:
        css = {"all": ["css/admin-channels.css"]}

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        """The channel list, with each channel's error rate over the last 24 hours on top."""
        extra_context = {**(extra_context or {}), "channel_rates": channel_error_rates(hours=24)}
        return super().changelist_view(request, extra_context)

    @admin.display(description=gettext_lazy("API keys"))
    def api_key_display(self, channel: Channel) -> str:
        endings = list(channel.api_key_endings or [])
        if not endings:
            return "—"
        shown = ", ".join(f"…{ending}" for ending in endings[:MAX_KEY_ENDINGS_LISTED])
        hidden = len(endings) - MAX_KEY_ENDINGS_LISTED
        if hidden > 0:
            return _("%(keys)s and %(count)s more") % {"keys": shown, "count": hidden}
        return shown

    def get_urls(self):
        return [
            path(
                "<path:object_id>/test/",
                self.admin_site.admin_view(require_POST(self.test_view)),
                name="relay_channel_test",
            ),
            *super().get_urls(),
        ]

    def _report_test(self, request: HttpRequest, channel: Channel) -> None:
        result = channel_test(channel)
        level = messages.SUCCESS if result.ok else messages.ERROR
        self.message_user(request, _test_message(channel, result), level)

    def test_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Send one small request through the channel and say how it went (change permission)."""
        channel_id = ascii_int(object_id)
        if channel_id is None:
            raise Http404(_("No such channel."))
        channel = get_object_or_404(Channel, pk=channel_id)
        if not self.has_change_permission(request, channel):
            raise PermissionDenied
        self._report_test(request, channel)
        return HttpResponseRedirect(reverse("admin:relay_channel_change", args=[channel.pk]))

    @admin.action(
        description=gettext_lazy("Test the selected channels (one small request each)"),
        permissions=["change"],
    )
    def test_channels(self, request: HttpRequest, queryset) -> None:
        channels = list(queryset.order_by("-priority", "name")[: MAX_CHANNELS_TESTED + 1])
        if len(channels) > MAX_CHANNELS_TESTED:
            self.message_user(
                request,
                _("Test at most %(count)s channels at a time.") % {"count": MAX_CHANNELS_TESTED},
                messages.WARNING,
            )
            return
        for channel in channels:
            self._report_test(request, channel)

    def save_model(self, request, obj: Channel, form: ChannelForm, change: bool) -> None:
        api_keys = form.cleaned_data.get("api_keys")
        if api_keys:
            channel_set_api_keys(channel=obj, api_keys=api_keys, save=False)
        status_changed = change and "status" in form.changed_data
        if "status" in form.changed_data:
            # Enabling by hand starts a clean count: otherwise the next failure would
            # disable the channel again at once.
            if obj.status == Channel.Status.ENABLED:
                obj.consecutive_failures = 0
                obj.disabled_at = None
            else:
                obj.disabled_at = timezone.now()
        super().save_model(request, obj, form, change)
        if status_changed:
            # The admin saves in one transaction: the row commits with the change.
            channel_status_audit(
                channel=obj,
                status=obj.status,
                previous=form.initial["status"],
                reason="Changed in the admin",
                actor=request.user,
            )
        routing_table_expire()
        served = [str(name) for name in obj.served_models or []]
        known = set(CatalogModel.objects.filter(name__in=served).values_list("name", flat=True))
        unknown = [name for name in served if name not in known]
        if unknown:
            self.message_user(
                request,
                _("Not in the catalog, so not callable until added there: %(names)s.")
                % {"names": ", ".join(unknown)},
                messages.WARNING,
            )
