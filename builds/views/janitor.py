"""The janitor's page: its latest runs with their findings (any logged-in user), and
"Run janitor now" (administrators: permission builds.run_janitor)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_q.tasks import async_task

from builds.models import JanitorRun
from catalog import roles

RUNS_SHOWN = 10
# Ten years: older than anything the factory made, and "now minus the threshold" stays a date.
MAX_OLDER_THAN_HOURS = 10 * 365 * 24


class JanitorRunForm(forms.Form):
    """The form of "Run janitor now": an age threshold in hours, finite and bounded (empty:
    JANITOR_OLDER_THAN_HOURS), and whether to only report."""

    older_than_hours = forms.FloatField(
        required=False,
        min_value=0,
        max_value=MAX_OLDER_THAN_HOURS,
        error_messages={
            "invalid": "The age threshold must be a number of hours.",
            "min_value": "The age threshold cannot be negative.",
            "max_value": f"The age threshold is at most {MAX_OLDER_THAN_HOURS} hours (ten years).",
        },
    )
    dry_run = forms.BooleanField(required=False)


@require_GET
def janitor_page(request: HttpRequest) -> HttpResponse:
    """The latest runs, newest first, each with what it found and did."""
    return _page(request)


def _page(
    request: HttpRequest, form: JanitorRunForm | None = None, status: int = 200
) -> HttpResponse:
    runs = list(JanitorRun.objects.select_related("requested_by")[:RUNS_SHOWN])
    for run in runs:
        run.orphans = [f for f in run.findings if f.get("orphan")]  # type: ignore[attr-defined]
    return render(
        request,
        "builds/janitor.html",
        {
            "runs": runs,
            "can_run_janitor": request.user.has_perm(roles.RUN_JANITOR),
            "default_hours": settings.JANITOR_OLDER_THAN_HOURS,
            "form": form,
            "max_hours": MAX_OLDER_THAN_HOURS,
        },
        status=status,
    )


@require_POST
@permission_required(roles.RUN_JANITOR, raise_exception=True)
def janitor_run(request: HttpRequest) -> HttpResponse:
    """Queue a janitor run now (on the default cluster: a run may wait on the cloud)."""
    form = JanitorRunForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    hours = form.cleaned_data["older_than_hours"]
    if hours is None:
        hours = float(settings.JANITOR_OLDER_THAN_HOURS)
    dry_run = form.cleaned_data["dry_run"]
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
