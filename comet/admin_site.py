"""The admin site: one "Accounts" section for everything about a customer's account.

Django lists models by the app that defines them, which splits an account across
"Accounts" (users, tokens), allauth's second "Accounts" (email addresses), "Billing"
(balances, discounts), "MFA" and "Authentication and Authorization". `get_app_list`
gathers them into one section; the other sections stay as their apps make them.
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

# (app label, model name) → the name shown in the Accounts section, in the order shown.
ACCOUNT_MODELS: dict[tuple[str, str], Any] = {
    ("accounts", "user"): _("Users"),
    ("billing", "account"): _("Balances"),
    ("accounts", "token"): _("API tokens"),
    ("billing", "userdiscount"): _("User discounts"),
    ("account", "emailaddress"): _("Email addresses"),
    ("mfa", "authenticator"): _("Two-factor authenticators"),
    ("auth", "group"): _("Staff permission groups"),
    ("accounts", "auditevent"): _("Audit log"),
}
ACCOUNTS_APP_LABEL = "accounts"

# Strings of Django's admin templates that Django's own zh_Hans catalog does not translate
# yet (5.2): listed here so that Comet's catalog carries them.
DJANGO_ADMIN_STRINGS = [
    gettext_noop("Model name"),
    gettext_noop("Add link"),
    gettext_noop("Change or view list link"),
    gettext_noop("Error:"),
    gettext_noop("After you’ve created a user, you’ll be able to edit more user options."),  # noqa: RUF001
]

# allauth's Authenticator names neither itself nor its fields: the admin would show
# "authenticator", "created at" in English. Their names are set here, at start-up, on the
# attributes Django reads for display; migrations read the names a model was declared with
# (`Meta` as written, a field's own argument), so this adds no migration to allauth's app.
AUTHENTICATOR_NAMES = {
    "user": _("user"),
    "type": _("type"),
    "data": _("data"),
    "created_at": _("created at"),
    "last_used_at": _("last used at"),
}


def name_authenticators() -> None:
    """Give allauth's Authenticator model and its fields translatable names."""
    from allauth.mfa.models import Authenticator

    options = Authenticator._meta
    options.verbose_name = _("authenticator")
    options.verbose_name_plural = _("authenticators")
    for field_name, verbose_name in AUTHENTICATOR_NAMES.items():
        options.get_field(field_name).verbose_name = verbose_name


class CometAdminSite(admin.AdminSite):
    site_header = _("Comet administration")
    site_title = _("Comet admin")
    index_title = _("Site administration")
    # The index links the platform dashboard (comet/dashboard.py) above the sections.
    index_template = "admin/comet_index.html"

    def get_urls(self) -> list[URLPattern | URLResolver]:
        """Add the platform dashboard, staff only like every admin page."""
        return [
            path("dashboard/", self.admin_view(self.dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        from comet.dashboard import dashboard

        return dashboard(request, context=self.each_context(request))

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        """Return the sections of the index (or of one app's page) with accounts gathered."""
        apps = self._build_app_dict(request)
        accounts: list[dict[str, Any]] = []
        for (label, model_name), name in ACCOUNT_MODELS.items():
            app = apps.get(label)
            if app is None:
                continue
            for model in list(app["models"]):
                if model["model"]._meta.model_name == model_name:
                    app["models"].remove(model)
                    accounts.append({**model, "name": name})
        sections = [app for app in apps.values() if app["models"]]
        for section in sections:
            section["models"].sort(key=lambda model: model["name"])
        if accounts:
            home = apps.get(ACCOUNTS_APP_LABEL) or {}
            sections.append(
                {
                    **home,
                    "name": _("Accounts"),
                    "app_label": ACCOUNTS_APP_LABEL,
                    "app_url": home.get("app_url") or self._app_url(ACCOUNTS_APP_LABEL),
                    "has_module_perms": True,
                    "models": accounts,
                }
            )
        sections.sort(key=lambda section: str(section["name"]).lower())
        if app_label is None:
            return sections
        # An app's own page lists every section holding one of its models, its own first.
        shown = [
            section
            for section in sections
            if section["app_label"] == app_label
            or any(model["model"]._meta.app_label == app_label for model in section["models"])
        ]
        return sorted(shown, key=lambda section: section["app_label"] != app_label)

    def _app_url(self, app_label: str) -> str:
        return reverse("admin:app_list", kwargs={"app_label": app_label}, current_app=self.name)


class CometAdminConfig(AdminConfig):
    default_site = "comet.admin_site.CometAdminSite"

    def ready(self) -> None:
        name_authenticators()
        super().ready()
