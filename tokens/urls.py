from django.urls import path

from accounts import token_views

app_name = "tokens"

urlpatterns = [
    path("", token_views.token_list, name="list"),
    path("new/", token_views.token_create_view, name="create"),
    path("<int:token_id>/edit/", token_views.token_edit, name="edit"),
    path("<int:token_id>/toggle/", token_views.token_toggle, name="toggle"),
    path("<int:token_id>/roll/", token_views.token_roll_view, name="roll"),
    path("<int:token_id>/delete/", token_views.token_delete_view, name="delete"),
]
