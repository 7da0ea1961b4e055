from django.urls import path

from logs import views

app_name = "logs"

urlpatterns = [
    path("export.csv", views.logs_csv, name="csv"),
    path("totals/", views.logs_totals, name="totals"),
    path("charts/usage-per-minute.json", views.chart_usage_per_minute, name="chart-per-minute"),
    path("charts/by-model.json", views.chart_by_model, name="chart-by-model"),
    path("charts/by-token.json", views.chart_by_token, name="chart-by-token"),
    path("charts/errors.json", views.chart_errors, name="chart-errors"),
    path("charts/home.json", views.chart_home, name="chart-home"),
]
