from __future__ import annotations

from django.urls import path

from builds import janitor_views, testrun_views, views

app_name = "builds"
urlpatterns = [
    path("", views.build_list, name="list"),
    path("<int:build_id>/", views.build_detail, name="detail"),
    path("<int:build_id>/live/", views.build_live, name="live"),
    path("<int:build_id>/cancel/", views.build_cancel, name="cancel"),
    path("<int:build_id>/retry/", views.build_retry, name="retry"),
    path("image/<slug:label>/", views.image_builds, name="for_image"),
    path("image/<slug:label>/rebuild/", views.rebuild, name="rebuild"),
    path("<int:build_id>/zones/<str:zone>/retry/", views.retry_zone, name="retry_zone"),
    path("versions/<int:version_id>/tests/", testrun_views.matrix_panel, name="test_matrix"),
    path("versions/<int:version_id>/tests/rerun/", testrun_views.rerun, name="test_rerun"),
    path("versions/<int:version_id>/tests/cancel/", testrun_views.cancel, name="test_cancel"),
    path("checks/<int:result_id>/", testrun_views.check_log, name="check_log"),
    path("janitor/", janitor_views.janitor_page, name="janitor"),
    path("janitor/run/", janitor_views.janitor_run, name="janitor_run"),
]
