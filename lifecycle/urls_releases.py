"""URLs of releases (included into the "lifecycle" namespace by lifecycle.urls)."""

from __future__ import annotations

from django.urls import path

from lifecycle import views_releases as views

urlpatterns = [
    path("versions/<int:version_id>/release/", views.release, name="release"),
    path("versions/<int:version_id>/withdraw/", views.withdraw, name="withdraw"),
    path("versions/<int:version_id>/release-panel/", views.release_panel, name="release_panel"),
    path("versions/<int:version_id>/release-notes/", views.release_notes, name="release_notes"),
    path("images/<slug:label>/releases/", views.release_history, name="release_history"),
    path("feed.json", views.catalogue_feed, name="feed"),
]
