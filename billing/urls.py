from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("history/", views.billing_history, name="history"),
    path("recharge/preview/", views.recharge_preview, name="recharge-preview"),
    path("recharge/checkout/", views.recharge_checkout, name="recharge-checkout"),
    path("recharge/redeem/", views.code_redeem_view, name="redeem"),
    path("low-balance-alert/", views.low_balance_alert, name="low-balance-alert"),
    path("orders/", views.order_history, name="orders"),
    path("orders/<str:number>/", views.order_detail, name="order"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe-webhook"),
]
