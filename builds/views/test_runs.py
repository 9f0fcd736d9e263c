"""The test matrix of a version (zones x storage types x checks, live while runs are active),
one check's log, and the Re-run / Cancel actions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from builds.models import CheckResult, TestRun
from builds.testing import orchestration
from catalog import audit, roles
from catalog.choices import NOT_BUILT_HERE, StorageType
from catalog.htmx import partial_request
from catalog.models import ImageVersion, Zone

POLL_SECONDS = 3


@require_GET
@vary_on_headers("HX-Request")
def matrix_panel(request: HttpRequest, version_id: int) -> HttpResponse:
    """The matrix card, which the version page loads with htmx and which polls while tests
    run; without JavaScript the version page links here, to a page of its own."""
    version = get_object_or_404(ImageVersion.objects.select_related("image"), pk=version_id)
    grid = orchestration.matrix(version)
    # Once every active run was asked to stop, say so rather than offer Cancel again.
    cancelling = (
        grid.active
        and not TestRun.objects.filter(
            version=version, state__in=orchestration.ACTIVE, cancel_requested=False
        ).exists()
    )
    context = {
        "version": version,
        "grid": grid,
        "verdict": orchestration.verdict(version, grid),
        "poll": POLL_SECONDS if grid.active else None,
        "cancelling": cancelling,
        # An adopted version is never tested: no Re-run buttons (the view refuses them too).
        "can_run": request.user.has_perm(roles.RUN_BUILDS) and not version.is_adopted,
        "not_built_here": NOT_BUILT_HERE,
    }
    partial = partial_request(request)
    template = "builds/test_matrix.html#matrix" if partial else "builds/test_matrix.html"
    return render(request, template, context)


@require_GET
@vary_on_headers("HX-Request")
def check_log(request: HttpRequest, result_id: int) -> HttpResponse:
    result = get_object_or_404(
        CheckResult.objects.select_related(
            "test_run__zone", "test_run__version__image", "test_run__requested_by"
        ),
        pk=result_id,
    )
    context = {
        "result": result,
        "run": result.test_run,
        "version": result.test_run.version,
        "poll": POLL_SECONDS if not result.is_done else None,
        "label": dict((c.name, c.label) for c in orchestration.checks()).get(result.check_name),
    }
    template = "builds/check_log.html#log" if partial_request(request) else "builds/check_log.html"
    return render(request, template, context)


@require_POST
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def rerun(request: HttpRequest, version_id: int) -> HttpResponse:
    """Re-run one cell (zone + storage + check), one row (zone + storage), one zone (zone: each
    storage type published there), or every failed cell (failed=1)."""
    version = get_object_or_404(ImageVersion.objects.select_related("image"), pk=version_id)
    if version.is_adopted:
        messages.error(request, NOT_BUILT_HERE)
        return redirect(version)
    zone = None
    if request.POST.get("zone"):
        zone = Zone.objects.filter(code=request.POST["zone"], enabled=True).first()
        if zone is None:
            messages.error(request, f"Zone {request.POST['zone']!r} is not an enabled zone.")
            return redirect(version)
    storage = request.POST.get("storage") or None
    if storage and storage not in StorageType.values:
        messages.error(request, f"There is no storage type {storage!r}.")
        return redirect(version)
    if storage and zone is None:
        messages.error(request, "Re-running one storage type needs its zone.")
        return redirect(version)
    check = request.POST.get("check") or None
    if check and check not in orchestration.check_names():
        messages.error(request, f"There is no check named {check!r}.")
        return redirect(version)
    if check and zone is None:
        messages.error(request, "Re-running one check needs its zone.")
        return redirect(version)
    if not version.local_images.filter(state="available").exists():
        messages.error(request, "This version is not published in any zone: nothing to test.")
        return redirect(version)
    failed_only = request.POST.get("failed") == "1"
    runs = orchestration.rerun(
        version,
        zone=zone,
        storage_type=storage,
        check=check,
        failed_only=failed_only,
        user=request.user,
        keep_resources_on_failure=request.POST.get("keep") == "1",
    )
    if not runs:
        messages.info(request, "Nothing to re-run: no check failed.")
        return redirect(version)
    on = f" on {orchestration.storage_words(storage)}" if storage else ""
    what = (
        f"{check} in {zone.code}{on}"
        if check and zone
        else (f"every check in {zone.code}{on}" if zone else "the failed checks")
    )
    audit.record(
        "tests.rerun",
        actor=request.user,
        image=version.image,
        target=version,
        message=f"Re-run of {what} for {version} ({len(runs)} run(s)).",
    )
    messages.success(request, f"Re-running {what}.")
    return redirect(version)


@require_POST
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def cancel(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(ImageVersion.objects.select_related("image"), pk=version_id)
    count = orchestration.cancel_active(version=version)
    if count:
        audit.record(
            "tests.cancel_requested",
            actor=request.user,
            image=version.image,
            target=version,
            message=f"Cancel of {count} test run(s) of {version}.",
        )
        messages.success(request, f"Cancelling {count} test run(s); servers are being removed.")
    else:
        messages.info(request, "No test run is active.")
    return redirect(version)
