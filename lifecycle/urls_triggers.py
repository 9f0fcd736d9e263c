"""URLs of the refresh triggers and deprecation (included into the "lifecycle" namespace)."""

from __future__ import annotations

from django.urls import path

from lifecycle import views_triggers as views

urlpatterns = [
    path("triggers/", views.triggers_page, name="triggers"),
    path("triggers/rebuild/", views.bulk_rebuild, name="bulk_rebuild"),
    path("images/<slug:label>/deprecation/", views.deprecation_panel, name="deprecation_panel"),
    path("images/<slug:label>/deprecation/set/", views.deprecation_set, name="deprecation_set"),
    path(
        "versions/<int:version_id>/advisories/",
        views.version_advisories,
        name="version_advisories",
    ),
]
