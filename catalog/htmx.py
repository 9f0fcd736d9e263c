"""htmx: whether a request asks for a region of a page or for the whole page.

A swappable region of a page is a named partial of that page's template, returned when htmx
asks for it; a boosted request is a navigation, and gets the whole page.
"""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


def partial_request(request: HttpRequest) -> bool:
    """True when htmx asks for a region of the page, not for the whole page (a boosted
    navigation). django-htmx's middleware sets `request.htmx`."""
    htmx: HtmxDetails | None = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.boosted
