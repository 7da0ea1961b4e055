from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group, Permission
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from core.admin import DollarsAdmin

from .models import AuditEvent, Token, User
from .services import LINE_FIELDS, user_line_set

# Django stores a permission's name in English ("Can add user"); the admin shows it in the
# reader's language: the four built-in actions by pattern, Comet's own by these msgids.
BUILT_IN_PERMISSIONS = {
    "add": gettext_lazy("Can add %(model)s"),
    "change": gettext_lazy("Can change %(model)s"),
    "delete": gettext_lazy("Can delete %(model)s"),
    "view": gettext_lazy("Can view %(model)s"),
}
COMET_PERMISSIONS = [
    gettext_noop("Can adjust account balances"),
    gettext_noop("Can credit a recharge order by hand"),
    gettext_noop("Can mint redemption codes (and see them once)"),
    gettext_noop("Can change prices and multipliers"),
]


def permission_label(permission: Permission) -> str:
    """Return "app | model | what it allows" in the active language."""
    content_type = permission.content_type
    model = content_type.model_class()
    action, _separator, model_name = permission.codename.partition("_")
    if (
        model is not None
        and action in BUILT_IN_PERMISSIONS
        and model_name == model._meta.model_name
    ):
        name = BUILT_IN_PERMISSIONS[action] % {"model": model._meta.verbose_name}
    else:
        name = _(permission.name)
    return f"{content_type} | {name}"


class PermissionChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return permission_label(obj)


def permissions_field(db_field: Any, request: HttpRequest, admin_form_field: Any) -> Any:
    """Return the permissions field of a user or group form, its choices translated."""
    field = admin_form_field(db_field, request, form_class=PermissionChoiceField)
    field.queryset = field.queryset.select_related("content_type")
    return field


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    ordering = ("-date_joined",)
    list_display = (
        "email",
        "display_name",
        "pricing_group",
        "is_active",
        "is_staff",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_active", "is_staff", "is_superuser", "pricing_group")
    list_select_related = ("pricing_group",)
    search_fields = ("email", "display_name")
    readonly_fields = ("date_joined", "last_login")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (gettext_lazy("Profile"), {"fields": ("display_name",)}),
        (
            gettext_lazy("Line and limits"),
            {
                "fields": LINE_FIELDS,
                "description": gettext_lazy(
                    "The line (pricing group) sets the prices, the models the account may "
                    "call and its default limits; a limit set here replaces the line's for "
                    "this account (empty: the line's). Every change is in the audit log."
                ),
            },
        ),
        (
            gettext_lazy("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (gettext_lazy("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "user_permissions":
            return permissions_field(db_field, request, super().formfield_for_manytomany)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request, obj: User, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # The line and limits are granted by their service, which writes the audit row;
        # the form saves the rest with them as they were.
        wanted = {field: form.cleaned_data.get(field) for field in LINE_FIELDS}
        saved = User.objects.get(pk=obj.pk)
        for field in LINE_FIELDS:
            setattr(obj, field, getattr(saved, field))
        super().save_model(request, obj, form, change)
        group = wanted["pricing_group"]
        user_line_set(
            user=obj,
            pricing_group_id=group.pk if group is not None else None,
            concurrency_limit=wanted["concurrency_limit"],
            rpm_limit=wanted["rpm_limit"],
            tpm_limit=wanted["tpm_limit"],
            actor=request.user,
        )


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "permissions":
            return permissions_field(db_field, request, super().formfield_for_manytomany)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


@admin.register(Token)
class TokenAdmin(DollarsAdmin):
    """Read-only view of tokens; owners manage them in the console."""

    money_fields = ("quota_remaining", "reserved", "used", "quota_alert_threshold")
    list_display = ("name", "user", "key_prefix", "key_last4", "is_enabled", "used", "last_used_at")
    list_filter = ("is_enabled",)
    search_fields = ("name", "user__email", "key_last4")
    list_select_related = ("user",)
    exclude = ("key_hash",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit log, read-only: rows are written with the changes they record."""

    list_display = ("created_at", "action", "user", "actor_display", "target_display", "detail")
    list_filter = ("action", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("user__email",)
    list_select_related = ("user", "actor")
    fields = (
        "created_at",
        "action",
        "user",
        "actor",
        "target_type",
        "target_id",
        "target_label",
        "detail",
    )
    readonly_fields = fields

    @admin.display(description=gettext_lazy("Done by"), ordering="actor__email")
    def actor_display(self, event: AuditEvent) -> str:
        return event.actor.email if event.actor else _("the system")

    @admin.display(description=gettext_lazy("Object"))
    def target_display(self, event: AuditEvent) -> str:
        return f"{event.target_label or '—'} ({event.target_type} {event.target_id})"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
