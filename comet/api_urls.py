from django.urls import include, path
from rest_framework.routers import SimpleRouter

from billing.api import AccountView, LedgerListView
from tokens.api import TokenViewSet

router = SimpleRouter()
router.register("tokens", TokenViewSet, basename="token")

app_name = "api"

urlpatterns = [
    path("", include(router.urls)),
    path("account/", AccountView.as_view(), name="account"),
    path("ledger/", LedgerListView.as_view(), name="ledger"),
]
