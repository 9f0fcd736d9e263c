"""The home page at the site's root (the catalogue's list of images is at /images/)."""

from __future__ import annotations

from django.urls import path

from lifecycle.views.home import eol_proposal, home_count, home_page

urlpatterns = [
    path("", home_page, name="home"),
    path("today/count/", home_count, name="home_count"),
    path("eol-proposals/<slug:label>/<str:decision>/", eol_proposal, name="eol_proposal"),
]
