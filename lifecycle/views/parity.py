"""Zone parity (lifecycle.parity): what is missing where, a check of the cloud on demand, and
"Publish the missing" after a confirmation."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_q.tasks import async_task

from catalog import roles
from catalog.models import AuditEntry
from lifecycle import parity
from lifecycle.models import ParityProblem

CHECK_TASK = "lifecycle.tasks.zone_parity_task"


def _context() -> dict:
    gaps = parity.live_gaps() + parity.cloud_gaps()
    fixes = parity.planned_fixes(gaps)
    return {
        "fixes": fixes,
        "publishable": [f for f in fixes if not f.skipped],
        "unchecked": [g for g in gaps if g.problem == ParityProblem.NOT_CHECKED],
        "last_check": AuditEntry.objects.filter(action=parity.CHECKED_ACTION)
        .only("created_at", "message")
        .first(),
    }


@require_GET
def parity_page(request: HttpRequest) -> HttpResponse:
    return render(request, "lifecycle/parity/page.html", _context())


@require_POST
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def parity_check(request: HttpRequest) -> HttpResponse:
    """Check the cloud now (a task: it lists every enabled zone's images)."""
    transaction.on_commit(lambda: async_task(CHECK_TASK, task_name="zone-parity-check"))
    messages.success(request, "Checking every enabled zone; this page shows the result when done.")
    return redirect("lifecycle:parity")


@require_http_methods(["GET", "POST"])
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def parity_fix(request: HttpRequest) -> HttpResponse:
    """GET: what "Publish the missing" will do. POST with confirm=yes: queue it."""
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        return render(request, "lifecycle/parity/confirm.html", _context())
    fixes = parity.publish_missing(request.user)
    queued = [f for f in fixes if not f.skipped]
    if queued:
        messages.success(
            request,
            f"Publishing {len(queued)} version-zone pair(s) again; each is tested there and "
            "offered once every check passed.",
        )
    else:
        messages.info(request, "Nothing to publish.")
    for fix in fixes:
        if fix.skipped:
            messages.warning(request, f"{fix.version} in {fix.zone.code}: {fix.skipped}.")
    return redirect("lifecycle:parity")
