from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("", views.profile, name="profile"),
    path("language/", views.language, name="language"),
    path("new-ip-alerts/", views.new_ip_alerts, name="new-ip-alerts"),
]
