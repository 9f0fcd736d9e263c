"""Login is required on every page, not only on the views that remember to ask."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url

# Paths reachable without a session: the login page, static files, the signed
# unsubscribe links customers follow from their emails, and the public image request form.
PUBLIC_PREFIXES = (
    "/accounts/login/",
    "/static/",
    "/healthz",
    "/lifecycle/unsubscribe/",
    "/lifecycle/requests/public/",
)
# Exact paths whose view authenticates the request itself: the catalogue feed takes a session
# or a bearer token (scripts), and still sends an anonymous browser to the login page.
SELF_AUTHENTICATING_PATHS = frozenset({"/lifecycle/feed.json"})


class LoginRequiredEverywhere:
    """Sends anonymous visitors to the login page, whatever view they asked for."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            not request.user.is_authenticated
            and not request.path.startswith(PUBLIC_PREFIXES)
            and request.path not in SELF_AUTHENTICATING_PATHS
        ):
            if request.headers.get("HX-Request"):
                response = HttpResponse(status=401)
                response["HX-Redirect"] = resolve_url(settings.LOGIN_URL)
                return response
            return redirect_to_login(request.get_full_path())
        return self.get_response(request)
