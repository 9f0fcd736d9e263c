"""Release pages: the release panel of a version, release and withdraw, release notes, an
image's release history, and the JSON catalogue feed (session or bearer token).

Views stay thin: the work is in lifecycle.releases and lifecycle.feed. Release and withdraw
need POST and the release permission, checked here whatever the page showed. The panel and
the history are htmx partials the catalogue pages load, so catalog never imports lifecycle.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_etags
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from catalog import roles
from catalog.htmx import partial_request
from catalog.models import Image, ImageVersion
from cloud.retries import CloudError
from lifecycle import feed, releases
from lifecycle.models import Release


class ReleaseForm(forms.Form):
    """The release button; the reason is required only when the matrix is not green."""

    override_reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Why release although the matrix is not green (kept in the audit log).",
    )


class WithdrawForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


def _version_or_404(version_id: int) -> ImageVersion:
    return get_object_or_404(ImageVersion.objects.select_related("image"), pk=version_id)


def _panel_context(version: ImageVersion, **extra: object) -> dict:
    verdict = releases.readiness(version)
    current = releases.current_release(version.image)
    notes = releases.release_notes(version)
    # Both are versions of this image: their links and the previous release need no query
    # for it.
    if current is not None:
        current.version.image = version.image
    if notes["previous"] is not None:
        notes["previous"].image = version.image
    is_current = current is not None and current.version_id == version.pk
    can_withdraw = False
    if is_current:
        assert current is not None, "is_current implies a current release"
        can_withdraw = releases.previous_release(current) is not None
    return {
        "version": version,
        "image": version.image,
        "readiness": verdict,
        "current": current,
        "is_current": is_current,
        "can_withdraw": can_withdraw,
        "notes": notes,
        "version_releases": version.releases.select_related("released_by", "withdrawn_by"),
        "release_form": extra.pop("release_form", None) or ReleaseForm(),
        "withdraw_form": extra.pop("withdraw_form", None) or WithdrawForm(),
        **extra,
    }


def _panel_response(request: HttpRequest, version: ImageVersion, **extra: object) -> HttpResponse:
    """The panel again (htmx), or back to the version page (no JavaScript)."""
    if partial_request(request):
        return render(request, "lifecycle/releases/panel.html", _panel_context(version, **extra))
    if extra.get("error"):
        messages.error(request, str(extra["error"]))
    # Without JavaScript the release page (the panel on a page of its own) is where the
    # forms were: go back there, with the outcome as a message.
    return redirect("lifecycle:release_notes", version.pk)


@require_GET
@vary_on_headers("HX-Request")
def release_panel(request: HttpRequest, version_id: int) -> HttpResponse:
    """The release panel of a version page: state, readiness, buttons, release notes."""
    version = _version_or_404(version_id)
    return render(request, "lifecycle/releases/panel.html", _panel_context(version))


@require_POST
@permission_required(roles.RELEASE, raise_exception=True)
def release(request: HttpRequest, version_id: int) -> HttpResponse:
    version = _version_or_404(version_id)
    form = ReleaseForm(request.POST)
    if not form.is_valid():
        return _panel_response(request, version, release_form=form, error="Check the form.")
    try:
        releases.release(version, request.user, form.cleaned_data["override_reason"])
    except releases.ReleaseError as exc:
        return _panel_response(request, version, release_form=form, error=str(exc))
    except CloudError as exc:
        return _panel_response(
            request,
            version,
            release_form=form,
            error=f"Publishing failed, nothing was released: {exc}",
        )
    messages.success(request, f"{version.name} released: {version.image.label} resolves to it.")
    return _panel_response(request, version, notice=f"Released {version.name}.")


@require_POST
@permission_required(roles.RELEASE, raise_exception=True)
def withdraw(request: HttpRequest, version_id: int) -> HttpResponse:
    version = _version_or_404(version_id)
    form = WithdrawForm(request.POST)
    if not form.is_valid():
        return _panel_response(
            request, version, withdraw_form=form, error="Say why the version is withdrawn."
        )
    try:
        now_current = releases.withdraw(version, request.user, form.cleaned_data["reason"])
    except releases.ReleaseError as exc:
        return _panel_response(request, version, withdraw_form=form, error=str(exc))
    except CloudError as exc:
        return _panel_response(
            request,
            version,
            withdraw_form=form,
            error=f"The cloud did not follow, nothing was withdrawn: {exc}",
        )
    text = f"{version.name} withdrawn: {now_current.version.name} is current again."
    messages.success(request, text)
    return _panel_response(request, version, notice=text)


@require_GET
@vary_on_headers("HX-Request")
def release_notes(request: HttpRequest, version_id: int) -> HttpResponse:
    """The release notes (htmx), or a page with the whole release panel: the no-JavaScript
    way to release and withdraw."""
    version = _version_or_404(version_id)
    if partial_request(request):
        context = {
            "version": version,
            "image": version.image,
            "notes": releases.release_notes(version),
        }
        return render(request, "lifecycle/releases/notes.html#notes", context)
    return render(request, "lifecycle/releases/notes.html", _panel_context(version))


@require_GET
@vary_on_headers("HX-Request")
def release_history(request: HttpRequest, label: str) -> HttpResponse:
    """An image's releases, newest first (a full page, or its table for the image page)."""
    image = get_object_or_404(Image, label=label)
    rows = (
        Release.objects.of_image(image)
        .select_related("version__image", "released_by", "withdrawn_by")
        .defer("version__manifest", "version__recipe")
        .newest_first()
    )
    current = next((r for r in rows if r.is_active), None)
    template = (
        "lifecycle/releases/history.html#history"
        if partial_request(request)
        else "lifecycle/releases/history.html"
    )
    return render(request, template, {"image": image, "rows": rows, "current": current})


def _feed_unauthorized(message: str, error: str = "") -> JsonResponse:
    response = JsonResponse({"error": message}, status=401)
    challenge = 'Bearer realm="catalogue feed"'
    response["WWW-Authenticate"] = f'{challenge}, error="{error}"' if error else challenge
    response["Cache-Control"] = "no-store"
    return response


def _feed_access_denied(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read the feed: a session, or a valid bearer token.

    The login middleware lets this one path through, so the check is here: a browser without
    a session goes to the login page as everywhere else; a script gets a 401 it can read.
    """
    if request.user.is_authenticated:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        if feed.token_allowed(token.strip()):
            return None
        return _feed_unauthorized("The bearer token is not valid.", "invalid_token")
    if not scheme and "text/html" in request.headers.get("Accept", ""):
        return redirect_to_login(request.get_full_path())
    return _feed_unauthorized("Log in, or send Authorization: Bearer <token>.")


def _feed_paging(request: HttpRequest) -> tuple[int, int] | HttpResponse | None:
    """(page, per_page) when the request asks for a page, None for the whole feed, or a 400.

    As the Marketplace API: `page` from 1, `per_page` up to feed.MAX_PER_PAGE (default 20).
    """
    if "page" not in request.GET and "per_page" not in request.GET:
        return None
    page, per_page = request.GET.get("page", "1"), request.GET.get("per_page", "20")
    if not (page.isdigit() and per_page.isdigit()):
        return JsonResponse({"error": "page and per_page are positive integers."}, status=400)
    if int(page) < 1 or not 1 <= int(per_page) <= feed.MAX_PER_PAGE:
        return JsonResponse(
            {"error": f"page starts at 1; per_page is 1 to {feed.MAX_PER_PAGE}."}, status=400
        )
    return int(page), int(per_page)


@require_GET
def catalogue_feed(request: HttpRequest) -> HttpResponse:
    """The JSON catalogue feed, with an ETag and 304 Not Modified on If-None-Match.

    Readable with a session or, for scripts, a bearer token from FEED_TOKENS.
    """
    denied = _feed_access_denied(request)
    if denied is not None:
        return denied
    paging = _feed_paging(request)
    if isinstance(paging, HttpResponse):
        return paging
    etag = feed.fingerprint()
    if paging is not None:
        # A page has its own validator: the catalogue's fingerprint and which page.
        etag = f'"{etag[1:-1]}-{paging[0]}-{paging[1]}"'
    wanted = parse_etags(request.headers.get("If-None-Match", ""))
    if "*" in wanted or etag in wanted or f"W/{etag}" in wanted:
        # Answered from the fingerprint alone: the document is not built.
        response: HttpResponse = HttpResponseNotModified()
    elif paging is not None:
        body = feed.render(feed.build_feed(page=paging[0], per_page=paging[1]))
        response = HttpResponse(body, content_type="application/json")
    else:
        response = HttpResponse(feed.document(etag), content_type="application/json")
    response["ETag"] = etag
    # Behind the login: caches may keep it per user, and must ask again each time.
    response["Cache-Control"] = "private, no-cache"
    patch_vary_headers(response, ["Authorization"])
    return response
