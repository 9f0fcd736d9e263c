from __future__ import annotations

from django.urls import path

from catalog import views

app_name = "catalog"
urlpatterns = [
    path("images/", views.overview_page, name="overview"),
    path("images/<slug:label>/", views.image_page, name="image"),
    path("images/<slug:label>/steps/new/", views.step_form, name="step_new"),
    path("images/<slug:label>/steps/add/", views.step_save, name="step_add"),
    path("images/<slug:label>/steps/<int:step_id>/edit/", views.step_form, name="step_edit"),
    path("images/<slug:label>/steps/<int:step_id>/save/", views.step_save, name="step_save"),
    path("images/<slug:label>/steps/<int:step_id>/delete/", views.step_delete, name="step_delete"),
    path("images/<slug:label>/steps/<int:step_id>/move/", views.step_move, name="step_move"),
    path("images/<slug:label>/dates/", views.set_lifecycle_date, name="set_date"),
    path(
        "images/<slug:label>/storage-types/",
        views.set_storage_types,
        name="set_storage_types",
    ),
    path(
        "images/<slug:label>/versions/<str:arch>/<str:name>/",
        views.version_page,
        name="version",
    ),
    path(
        "images/<slug:label>/versions/<str:arch>/<str:name>/sbom.spdx.json",
        views.version_sbom,
        {"fmt": "spdx"},
        name="version_spdx",
    ),
    path(
        "images/<slug:label>/versions/<str:arch>/<str:name>/sbom.cdx.json",
        views.version_sbom,
        {"fmt": "cyclonedx"},
        name="version_cyclonedx",
    ),
    path("eol/import/", views.import_eol, name="import_eol"),
    path("zones/", views.zones_page, name="zones"),
    path("zones/<str:code>/toggle/", views.zone_toggle, name="zone_toggle"),
    path("audit/", views.audit_log, name="audit"),
]
