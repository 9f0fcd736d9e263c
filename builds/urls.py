from __future__ import annotations

app_name = "builds"
urlpatterns: list = []
