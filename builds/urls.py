from __future__ import annotations

from django.urls import path

from builds.views import builds, janitor, test_runs

app_name = "builds"
urlpatterns = [
    path("", builds.build_list, name="list"),
    path("<int:build_id>/", builds.build_detail, name="detail"),
    path("<int:build_id>/live/", builds.build_live, name="live"),
    path("<int:build_id>/cancel/", builds.build_cancel, name="cancel"),
    path("<int:build_id>/retry/", builds.build_retry, name="retry"),
    path("image/<slug:label>/", builds.image_builds, name="for_image"),
    path("image/<slug:label>/rebuild/", builds.rebuild, name="rebuild"),
    path("<int:build_id>/zones/<str:zone>/retry/", builds.retry_zone, name="retry_zone"),
    path("versions/<int:version_id>/tests/", test_runs.matrix_panel, name="test_matrix"),
    path("versions/<int:version_id>/tests/rerun/", test_runs.rerun, name="test_rerun"),
    path("versions/<int:version_id>/tests/cancel/", test_runs.cancel, name="test_cancel"),
    path("checks/<int:result_id>/", test_runs.check_log, name="check_log"),
    path("janitor/", janitor.janitor_page, name="janitor"),
    path("janitor/run/", janitor.janitor_run, name="janitor_run"),
]
