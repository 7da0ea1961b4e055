from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("", views.profile, name="profile"),
    path("language/", views.language, name="language"),
    path("time-zone/", views.time_zone, name="time-zone"),
    path("time-zone/browser/", views.browser_time_zone, name="browser-time-zone"),
    path("new-ip-alerts/", views.new_ip_alerts, name="new-ip-alerts"),
]
