"""Builds in the Django admin: read-only (state changes go through the dashboard)."""

from __future__ import annotations

from django.contrib import admin

from builds.models import Build, Stage
from catalog.admin import ReadOnlyAdmin


@admin.register(Build)
class BuildAdmin(ReadOnlyAdmin):
    list_display = ["pk", "image", "arch", "state", "trigger", "created_at", "finished_at"]
    list_filter = ["state", "trigger", "arch"]


@admin.register(Stage)
class StageAdmin(ReadOnlyAdmin):
    list_display = ["build", "name", "state", "started_at", "finished_at"]
