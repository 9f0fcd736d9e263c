"""The home page: what needs a person today (lifecycle.home), and the decision on an earlier
EOL an import proposed (catalog.eol), taken from it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from catalog import eol, roles
from catalog.models import UpstreamLifecycle
from lifecycle import home


@require_GET
def home_page(request: HttpRequest) -> HttpResponse:
    page = home.build()
    return render(request, "lifecycle/home.html", {"home": page, "home_count": page.total})


@require_GET
@cache_control(private=True, max_age=60)
def home_count(request: HttpRequest) -> HttpResponse:
    """The navigation's count, loaded by every other page after it is shown (two queries),
    so that no page pays for it before it answers; kept a minute by the browser."""
    return render(request, "lifecycle/home_count.html", {"count": home.total()})


@require_POST
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def eol_proposal(request: HttpRequest, label: str, decision: str) -> HttpResponse:
    """Accept or reject the earlier EOL an import proposed for this image; back to the home
    page, which no longer lists it. Audited by catalog.eol."""
    if decision not in ("accept", "reject"):
        raise Http404("No such decision.")
    row = get_object_or_404(UpstreamLifecycle.objects.select_related("image"), image__label=label)
    try:
        if decision == "accept":
            row = eol.accept_proposal(row.pk, actor=request.user)
            messages.success(request, f"{label}: EOL is now {row.security_support_end:%Y-%m-%d}.")
        else:
            row = eol.reject_proposal(row.pk, actor=request.user)
            messages.success(
                request,
                f"{label}: EOL kept; upstream's {row.rejected_security_support_end:%Y-%m-%d}"
                " will not be proposed again.",
            )
    except eol.NoProposal:
        messages.info(request, f"{label}: no EOL change is waiting any more.")
    return redirect(reverse("home") + "#home-eol")
