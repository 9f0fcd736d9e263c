"""Login and a role are required on every page, not only on the views that remember to ask."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url

from catalog import roles

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
# What a signed-in user with no role may still reach: their own account (log out, change
# the password) besides the public paths.
NO_ROLE_PREFIXES = (*PUBLIC_PREFIXES, "/accounts/")


class LoginRequiredEverywhere:
    """Sends anonymous visitors to the login page, whatever view they asked for, and shows
    signed-in users who hold no role (superusers always pass) the "no access yet" page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated:
            if request.path.startswith(PUBLIC_PREFIXES) or request.path in (
                SELF_AUTHENTICATING_PATHS
            ):
                return self.get_response(request)
            if request.headers.get("HX-Request"):
                response = HttpResponse(status=401)
                response["HX-Redirect"] = resolve_url(settings.LOGIN_URL)
                return response
            return redirect_to_login(request.get_full_path())
        if not roles.has_role(request.user) and not request.path.startswith(NO_ROLE_PREFIXES):
            response = render(request, "registration/no_access.html", status=403)
            if request.headers.get("HX-Request"):
                # A page left open while the role was taken away: show the reason in full.
                response["HX-Refresh"] = "true"
            return response
        return self.get_response(request)
