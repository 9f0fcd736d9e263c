"""The janitor's page: its latest runs with their findings (any logged-in user), and
"Run janitor now" (administrators: permission builds.run_janitor)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from builds.models import JanitorRun
from catalog import roles

RUNS_SHOWN = 10


def janitor_page(request: HttpRequest) -> HttpResponse:
    """The latest runs, newest first, each with what it found and did."""
    runs = list(JanitorRun.objects.select_related("requested_by")[:RUNS_SHOWN])
    for run in runs:
        run.orphans = [f for f in run.findings if f.get("orphan")]  # type: ignore[attr-defined]
    return render(
        request,
        "builds/janitor.html",
        {
            "runs": runs,
            "can_run_janitor": request.user.has_perm(roles.RUN_JANITOR),
            "default_hours": getattr(settings, "JANITOR_OLDER_THAN_HOURS", 24),
        },
    )


@require_POST
@permission_required(roles.RUN_JANITOR, raise_exception=True)
def janitor_run(request: HttpRequest) -> HttpResponse:
    """Queue a janitor run now (on the default cluster: a run may wait on the cloud)."""
    from django_q.tasks import async_task

    try:
        hours = float(
            request.POST.get("older_than_hours")
            or getattr(settings, "JANITOR_OLDER_THAN_HOURS", 24)
        )
    except ValueError:
        messages.error(request, "The age threshold must be a number of hours.")
        return redirect("builds:janitor")
    if hours < 0:
        messages.error(request, "The age threshold cannot be negative.")
        return redirect("builds:janitor")
    dry_run = request.POST.get("dry_run") == "on"
    user_id = request.user.pk
    transaction.on_commit(
        lambda: async_task(
            "builds.janitor.janitor_task_for",
            user_id,
            hours,
            dry_run,
            task_name="janitor-now",
            group="janitor",
        )
    )
    messages.success(
        request,
        f"Janitor {'dry run ' if dry_run else ''}started (orphans older than {hours:g} h); "
        "refresh this page for its findings.",
    )
    return redirect("builds:janitor")
