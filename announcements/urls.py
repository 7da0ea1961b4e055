from django.urls import path

from . import views

app_name = "announcements"

urlpatterns = [
    path("<int:pk>/", views.announcement_detail, name="detail"),
    path("read-all/", views.mark_all_read, name="mark_all_read"),
    path("feed.atom", views.AnnouncementFeed(), name="feed"),
]
