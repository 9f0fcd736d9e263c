"""Build pages: the list, one build followed live, and the Rebuild / Cancel / Retry actions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_q.tasks import async_task

from builds.choices import BuildState, Trigger
from builds.models import Build, StageLogLine
from builds.queue import enqueue, queue_for, request_build
from catalog import audit, roles
from catalog.choices import LocalImageState, StorageType
from catalog.htmx import partial_request
from catalog.models import Image, LocalImage

LOG_TAIL = 300


@require_GET
@vary_on_headers("HX-Request")
def build_list(request: HttpRequest) -> HttpResponse:
    # version__image: a version's URL names its image. Its manifest and recipe are not shown.
    builds = Build.objects.select_related("image", "requested_by", "version__image").defer(
        "version__manifest", "version__recipe"
    )
    state = request.GET.get("state", "")
    trigger = request.GET.get("trigger", "")
    label = request.GET.get("image", "").strip()
    if state in BuildState.values:
        builds = builds.filter(state=state)
    if trigger in Trigger.values:
        builds = builds.filter(trigger=trigger)
    if label:
        builds = builds.filter(image__label=label)
    page = Paginator(builds, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "state": state,
        "trigger": trigger,
        "image_label": label,
        "states": BuildState.choices,
        "triggers": Trigger.choices,
    }
    template = "builds/list.html#table" if partial_request(request) else "builds/list.html"
    return render(request, template, context)


def _live_context(build: Build) -> dict:
    stages = list(build.stages.all())
    local_images = (
        list(build.version.local_images.select_related("zone")) if build.version is not None else []
    )
    tail = list(
        StageLogLine.objects.filter(stage__build=build)
        .select_related("stage")
        .order_by("-id")[:LOG_TAIL]
    )
    tail.reverse()
    return {"build": build, "stages": stages, "log_lines": tail, "local_images": local_images}


@require_GET
def build_detail(request: HttpRequest, build_id: int) -> HttpResponse:
    build = get_object_or_404(
        Build.objects.select_related("image", "requested_by", "version"), pk=build_id
    )
    return render(request, "builds/detail.html", _live_context(build))


@require_GET
def build_live(request: HttpRequest, build_id: int) -> HttpResponse:
    """The region of the build page that polls: state, stages, progress and log tail."""
    build = get_object_or_404(
        Build.objects.select_related("image", "requested_by", "version"), pk=build_id
    )
    return render(request, "builds/detail.html#live", _live_context(build))


@require_GET
def image_builds(request: HttpRequest, label: str) -> HttpResponse:
    image = get_object_or_404(Image, label=label)
    return render(
        request, "builds/image_builds.html", {"image": image, "builds": _latest_builds(image)}
    )


def _latest_builds(image: Image) -> list[Build]:
    return list(
        image.builds.select_related("requested_by", "version__image").defer(
            "version__manifest", "version__recipe"
        )[:10]
    )


@require_POST
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def rebuild(request: HttpRequest, label: str) -> HttpResponse:
    """Queue one build per architecture of the image (never a duplicate)."""
    image = get_object_or_404(Image, label=label)
    if image.is_os:
        arches = list(image.sources.values_list("arch", flat=True))
    else:
        arches = list(image.architectures)
    if not arches:
        message = f"{image.label} has no upstream source to build from."
        if partial_request(request):
            return HttpResponse(f'<span class="error-banner">{message}</span>')
        messages.error(request, message)
        return redirect(image.get_absolute_url())
    results = [
        request_build(
            image,
            arch,
            trigger=Trigger.MANUAL,
            reason="Rebuild requested from the dashboard",
            user=request.user,
        )
        for arch in arches
    ]
    if partial_request(request):
        # The answer, and out of band the image page's Builds and Audit log it changed.
        context = {
            "results": results,
            "image": image,
            "builds": _latest_builds(image),
            "audit_entries": image.audit_entries.select_related("actor")[:20],
        }
        return render(request, "builds/queued.html", context)
    for r in results:
        verb = "Queued" if r.created else "Already queued or running:"
        messages.success(request, f"{verb} build #{r.build.pk} ({r.build.arch}).")
    return redirect(results[0].build.get_absolute_url())


@require_POST
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def build_cancel(request: HttpRequest, build_id: int) -> HttpResponse:
    build = get_object_or_404(Build, pk=build_id)
    if build.request_cancel():
        audit.record("build.cancel_requested", actor=request.user, image=build.image, target=build)
        messages.success(request, f"Cancelling build #{build.pk}.")
    else:
        messages.error(
            request, f"Build #{build.pk} has already ended ({build.get_state_display()})."
        )
    return redirect(build.get_absolute_url())


@require_POST
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def build_retry(request: HttpRequest, build_id: int) -> HttpResponse:
    build = get_object_or_404(Build, pk=build_id)
    if (
        Build.objects.active()
        .filter(image=build.image, arch=build.arch)
        .exclude(pk=build.pk)
        .exists()
    ):
        messages.error(request, "Another build of this image is queued or running.")
        return redirect(build.get_absolute_url())
    if build.reset_for_retry():
        enqueue(build)
        audit.record("build.retried", actor=request.user, image=build.image, target=build)
        messages.success(
            request, f"Build #{build.pk} queued again; it resumes at the failed stage."
        )
    else:
        messages.error(
            request, f"Build #{build.pk} cannot be retried ({build.get_state_display()})."
        )
    return redirect(build.get_absolute_url())


@require_POST
@permission_required(roles.RUN_BUILDS, raise_exception=True)
def retry_zone(request: HttpRequest, build_id: int, zone: str) -> HttpResponse:
    """Publish the build's version in one zone again (one storage type of it when the form
    names one), without touching the others."""
    build = get_object_or_404(Build, pk=build_id)
    storage_type = request.POST.get("storage_type", "")
    failed = LocalImage.objects.filter(
        version_id=build.version_id, zone__code=zone, state=LocalImageState.ERROR
    )
    if storage_type:
        failed = failed.filter(storage_type=storage_type)
    if build.is_active or (storage_type and storage_type not in StorageType.values):
        failed = failed.none()
    kinds = sorted(set(failed.values_list("storage_type", flat=True)))
    where = f"{zone} ({', '.join(StorageType(k).label for k in kinds)})" if kinds else zone
    if not kinds:
        messages.error(request, f"Nothing to retry in {zone}.")
        return redirect(build.get_absolute_url())

    def send() -> None:
        async_task(
            "builds.tasks.retry_publish_zone",
            build.pk,
            zone,
            kinds,
            cluster=queue_for(build.arch),
        )

    transaction.on_commit(send)
    audit.record(
        "build.zone_retried", actor=request.user, image=build.image, target=build, message=where
    )
    messages.success(request, f"Publishing again in {where}.")
    return redirect(build.get_absolute_url())
