from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import views as account_views
from announcements import views as announcement_views
from billing import views as billing_views
from comet import health, metrics, views
from logs import api as log_api
from logs import views as log_views
from models_catalog import views as catalog_views

# The admin signs in through allauth: the same form, rate limits and second factor.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

console_patterns = (
    [
        path("", views.home, name="home"),
        path("recharge/", billing_views.recharge_page, name="recharge"),
        path("logs/", log_views.logs_page, name="logs"),
        path("relay-api/", views.relay_api, name="relay-api"),
    ],
    "console",
)

urlpatterns = [
    path("", include(console_patterns)),
    path("pricing", catalog_views.pricing, name="pricing"),
    path("", include("models_catalog.urls")),
    path("announcements/", announcement_views.announcement_list, name="announcements"),
    path("announcements/", include("announcements.urls")),
    path("tokens/", include("tokens.urls")),
    path("billing/", include("billing.urls")),
    path("logs/", include("logs.urls")),
    path("api/", include("comet.api_urls")),
    path("api/v1/logs", log_api.LogListView.as_view(), name="api-logs"),
    path("api/v1/logs/export.csv", log_api.LogExportView.as_view(), name="api-logs-csv"),
    path("user/quota", billing_views.user_quota, name="user-quota"),
    path("user/quota/", billing_views.user_quota),
    # Django's set_language, and saving the choice of a signed-in user (README, "Languages").
    path("i18n/setlang/", account_views.set_language, name="set_language"),
    path("accounts/", include("allauth.urls")),
    path("profile/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    # Browsers ask for /favicon.ico on pages without an icon link (the admin's).
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}img/comet.svg")),
]

# An unknown /api/ address answers in the API's JSON error format, like every API error.
handler404 = "comet.views.not_found"
# No database connection free in time answers 503 "busy", not 500.
handler500 = "comet.views.server_error"
