from django.urls import path

from . import api, views

app_name = "models_catalog"

urlpatterns = [
    path("pricing/models/<path:model_name>", views.model_detail, name="model_detail"),
    path("pricing/unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("price-emails/", views.subscription, name="subscription"),
    path("api/v1/pricing", api.PricingView.as_view(), name="api_pricing"),
]
