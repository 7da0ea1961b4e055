from django.urls import path

from tokens import views

app_name = "tokens"

urlpatterns = [
    path("", views.token_list, name="list"),
    path("new/", views.token_create_view, name="create"),
    path("<int:token_id>/edit/", views.token_edit, name="edit"),
    path("<int:token_id>/toggle/", views.token_toggle, name="toggle"),
    path("<int:token_id>/roll/", views.token_roll_view, name="roll"),
    path("<int:token_id>/delete/", views.token_delete_view, name="delete"),
]
