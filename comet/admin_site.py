"""The admin site: one "Accounts" section for everything about a customer's account.

Django lists models by the app that defines them, which splits an account across
"Accounts" (users, tokens), allauth's second "Accounts" (email addresses), "Billing"
(balances, discounts), "MFA" and "Authentication and Authorization". `get_app_list`
gathers them into one section; the other sections stay as their apps make them.
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

# (app label, model name) → the name shown in the Accounts section, in the order shown.
ACCOUNT_MODELS: dict[tuple[str, str], Any] = {
    ("accounts", "user"): _("Users"),
    ("billing", "account"): _("Balances"),
    ("accounts", "token"): _("API tokens"),
    ("billing", "userdiscount"): _("User discounts"),
    ("account", "emailaddress"): _("Email addresses"),
    ("mfa", "authenticator"): _("Two-factor authenticators"),
    ("auth", "group"): _("Staff permission groups"),
}
ACCOUNTS_APP_LABEL = "accounts"


class CometAdminSite(admin.AdminSite):
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
