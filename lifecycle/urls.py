"""URLs of the lifecycle app: each concern has its own URL module."""

from __future__ import annotations

import importlib

from django.urls import include, path

app_name = "lifecycle"
urlpatterns = []
for concern in ("releases", "notices", "triggers", "requests"):
    try:
        importlib.import_module(f"lifecycle.urls_{concern}")
    except ModuleNotFoundError:
        continue
    urlpatterns.append(path("", include(f"lifecycle.urls_{concern}")))
