"""A Content-Security-Policy that runs no inline script and applies no inline style, and
pages that need neither: every style is in static/css/factory.css, every script a file, and
htmx is told not to inject its indicator style nor evaluate attribute code."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from builds.choices import BuildState, StageState
from builds.models import Build, Stage
from catalog.models import RecipeStep
from tests.catalog.factories import os_image
from tests.lifecycle import version_with_images

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"""<style\b|\sstyle\s*=\s*["']""", re.I)
EVENT_HANDLER = re.compile(r"""\son[a-z]+\s*=\s*["']|\shx-on[:-]|javascript:""", re.I)


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = (part.split() for part in header.split(";") if part.strip())
    return {words[0]: words[1:] for words in directives}


@pytest.fixture
def pages(manager) -> list[str]:
    """Pages of every part of the dashboard, with the rows that make them draw everything."""
    image = os_image("debian_bookworm", eol=dt.date.today() + dt.timedelta(days=400))
    image.upstream.release_date = dt.date.today() - dt.timedelta(days=400)
    image.upstream.save()
    RecipeStep.objects.create(image=image, position=1, type="update_packages", params={})
    build = Build.objects.create(image=image, state=BuildState.FETCHING)
    Stage.objects.create(
        build=build,
        name="fetch",
        state=StageState.RUNNING,
        progress_done=40,
        progress_total=100,
        progress_unit="bytes",
    )
    version = version_with_images(image, "2026-01-01")
    return [
        "/",
        image.get_absolute_url(),
        reverse("builds:list"),
        build.get_absolute_url(),
        version.get_absolute_url(),
        reverse("builds:test_matrix", args=[version.pk]),
        reverse("lifecycle:deprecation_panel", args=[image.label]),
        reverse("catalog:zones"),
        reverse("catalog:audit"),
        reverse("builds:janitor"),
        reverse("lifecycle:triggers"),
        reverse("lifecycle:requests"),
        reverse("password_change"),
        reverse("lifecycle:timeline"),
    ]


def test_every_page_forbids_inline_script_inline_style_and_eval(client, manager, pages) -> None:
    client.force_login(manager)
    for url in [*pages, "/admin/"]:
        response = client.get(url)
        assert response.status_code in (200, 302), url
        csp = policy(response)
        assert csp["script-src"] == ["'self'"], url
        assert csp["style-src"] == ["'self'"], url
        assert csp["default-src"] == ["'self'"], url
        assert csp["object-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"], url


def test_the_login_page_has_the_policy_too() -> None:
    assert policy(Client().get("/accounts/login/"))["script-src"] == ["'self'"]


def test_no_page_carries_an_inline_script_style_or_event_handler(client, manager, pages) -> None:
    client.force_login(manager)
    for url in [*pages, "/accounts/login/"]:
        html = client.get(url).content.decode()
        assert not INLINE_SCRIPT.search(html), (url, INLINE_SCRIPT.search(html).group(0))
        assert not INLINE_STYLE.search(html), (url, INLINE_STYLE.search(html).group(0))
        assert not EVENT_HANDLER.search(html), (url, EVENT_HANDLER.search(html).group(0))


def test_no_dashboard_template_has_an_inline_script_style_or_event_handler() -> None:
    """Every template, including the pages and partials the test above does not draw; emails
    are not pages (mail clients need inline styles) and are left out."""
    templates = ROOT / "templates"
    offenders = []
    for path in sorted(templates.rglob("*.html")):
        if path.relative_to(templates).parts[0] == "emails":
            continue
        text = path.read_text()
        for pattern in (INLINE_SCRIPT, INLINE_STYLE, EVENT_HANDLER):
            offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert offenders == []


def test_htmx_is_configured_to_inject_no_style_and_evaluate_nothing(client, manager) -> None:
    client.force_login(manager)
    html = client.get("/").content.decode()

    config = re.search(r"""<meta name="htmx-config" content='([^']*)'>""", html)
    assert config is not None
    assert '"includeIndicatorStyles": false' in config.group(1)
    assert '"allowEval": false' in config.group(1)
    # The indicator style htmx would have injected is in the stylesheet instead.
    stylesheet = (ROOT / "static/css/factory.css").read_text()
    assert ".htmx-indicator { opacity:0; }" in stylesheet


def test_a_timeline_and_a_progress_bar_are_placed_without_inline_style(
    client, manager, pages
) -> None:
    client.force_login(manager)
    image_page = client.get(pages[1]).content.decode()
    build_page = client.get(pages[3]).content.decode()

    # The timeline is SVG placed by its attributes and coloured by classes of factory.css.
    drawing = image_page[image_page.index('<svg class="timeline-svg"') :]
    drawing = drawing[: drawing.index("</svg>")]
    assert re.search(r'<rect class="tl-span tl-security" x="[\d.]+"', drawing)
    assert "style=" not in drawing
    assert '<progress class="progress" max="100" value="40"' in build_page
    stylesheet = (ROOT / "static/css/factory.css").read_text()
    assert ".timeline-svg .tl-span.tl-security" in stylesheet
