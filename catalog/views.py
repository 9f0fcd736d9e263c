"""Catalogue pages: overview, image page, recipe editor, upstream dates, storage types, zones,
audit log.

Views stay thin: reading goes through catalog.overview, changes through model methods and
catalog.audit. Every view that changes state requires POST and a permission, checked here
on the server whatever the page showed.
"""

from __future__ import annotations

import json
import logging

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from catalog import audit, overview, recipes, roles, sbom
from catalog.choices import DateSource, ImageKind, StepType, StorageType
from catalog.current import current_versions
from catalog.forms import LifecycleDateForm, StepForm, StorageTypesForm
from catalog.htmx import partial_request
from catalog.manifests import diff_manifests
from catalog.models import AuditEntry, Image, ImageVersion, RecipeStep, UpstreamLifecycle, Zone

log = logging.getLogger(__name__)


@require_GET
@vary_on_headers("HX-Request")
def overview_page(request: HttpRequest) -> HttpResponse:
    filters = overview.OverviewFilters.from_query(request.GET)
    page, rows = overview.page_of_rows(filters, request.GET.get("page"))
    context = {
        "filters": filters,
        "page": page,
        "rows": rows,
        "badges": overview.BADGES,
        "kinds": ImageKind.choices,
        "sorts": [
            ("label", "Label"),
            ("name", "Name"),
            ("eol", "EOL, soonest first"),
            ("-eol", "EOL, latest first"),
            ("age", "Oldest version first"),
            ("kind", "Kind"),
        ],
        "last_import": UpstreamLifecycle.objects.aggregate(at=Max("last_checked_at"))["at"],
        "import_errors": UpstreamLifecycle.objects.filter(last_import_ok=False)
        .select_related("image")
        .order_by("image__label"),
    }
    template = (
        "catalog/overview.html#table" if partial_request(request) else "catalog/overview.html"
    )
    return render(request, template, context)


def _image_or_404(label: str) -> Image:
    return get_object_or_404(
        Image.objects.select_related("category", "upstream", "base_image", "replacement"),
        label=label,
    )


@require_GET
def image_page(request: HttpRequest, label: str) -> HttpResponse:
    image = _image_or_404(label)
    lifecycle = getattr(image, "upstream", None)
    context = {
        "image": image,
        "lifecycle": lifecycle,
        "sources": image.sources.all(),
        "steps": image.steps.all(),
        # The table shows neither a version's manifest nor its recipe (the largest columns).
        "versions": image.versions.defer("manifest", "recipe")[:50],
        "audit_entries": image.audit_entries.select_related("actor")[:20],
        "date_form": LifecycleDateForm(),
        "step_types": StepType.choices,
        "storage_types": _storage_type_labels(image),
        "storage_form": StorageTypesForm(initial={"storage_types": image.storage_types}),
    }
    return render(request, "catalog/image.html", context)


def _storage_type_labels(image: Image) -> list[str]:
    return [StorageType(v).label for v in image.storage_types or [] if v in StorageType.values]


# --- publishing settings ----------------------------------------------------------------------


@require_POST
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def set_storage_types(request: HttpRequest, label: str) -> HttpResponse:
    """Which storage types the image's versions are published with (one or both)."""
    image = _image_or_404(label)
    form = StorageTypesForm(request.POST)
    if not form.is_valid():
        errors = " ".join(str(e) for e in form.errors.get("storage_types", []))
        messages.error(request, f"The storage types were not changed: {errors}")
        return redirect(image.get_absolute_url() + "#storage-types")
    chosen = form.cleaned_data["storage_types"]
    with transaction.atomic():
        locked = Image.objects.select_for_update().get(pk=image.pk)
        before = audit.snapshot(locked, ["storage_types"])
        if locked.storage_types == chosen:
            messages.info(request, "The storage types are unchanged.")
            return redirect(image.get_absolute_url() + "#storage-types")
        locked.storage_types = chosen
        locked.save(update_fields=["storage_types"])
        audit.record(
            "image.storage_types_set",
            actor=request.user,
            image=locked,
            target=locked,
            before=before,
            after=audit.snapshot(locked, ["storage_types"]),
        )
    names = ", ".join(_storage_type_labels(locked))
    messages.success(
        request, f"Storage types saved ({names}): versions published from now on use them."
    )
    return redirect(image.get_absolute_url() + "#storage-types")


# --- recipe editor ---------------------------------------------------------------------------


def _steps_response(request: HttpRequest, image: Image) -> HttpResponse:
    if partial_request(request):
        # The recipe, and out of band the Audit log the change added to.
        context = {
            "image": image,
            "steps": image.steps.all(),
            "builds": None,
            "audit_entries": image.audit_entries.select_related("actor")[:20],
        }
        return HttpResponse(
            render_to_string("catalog/image.html#recipe", context, request)
            + render_to_string("catalog/image_changed.html", context, request)
        )
    return redirect(image.get_absolute_url() + "#recipe")


def _recipe_order(image: Image) -> list[str]:
    """The recipe as one line per step, for the audit of a reordering."""
    return [f"{s.get_type_display()}: {s.summary()}".rstrip(": ") for s in image.steps.all()]


@require_GET
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def step_form(request: HttpRequest, label: str, step_id: int | None = None) -> HttpResponse:
    """The add/edit form of a step; asked again by htmx when the type changes."""
    image = _image_or_404(label)
    step = get_object_or_404(RecipeStep, pk=step_id, image=image) if step_id else None
    step_type = request.GET.get("type") or (step.type if step else StepType.INSTALL_PACKAGES)
    if step and step_type == step.type:
        initial = StepForm.initial_for(step.type, step.params, step.enabled)
    else:
        initial = {"type": step_type, "enabled": True}
    form = StepForm(initial=initial, step_type=step_type)
    return render(request, "catalog/step_form.html", {"image": image, "step": step, "form": form})


@require_POST
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def step_save(request: HttpRequest, label: str, step_id: int | None = None) -> HttpResponse:
    image = _image_or_404(label)
    step = get_object_or_404(RecipeStep, pk=step_id, image=image) if step_id else None
    form = StepForm(request.POST)
    if not form.is_valid():
        response = render(
            request, "catalog/step_form.html", {"image": image, "step": step, "form": form}
        )
        if partial_request(request):
            # The form was posted to replace the recipe; show it again, with its errors,
            # where it was instead.
            response["HX-Retarget"] = "#step-editor"
            response["HX-Reswap"] = "innerHTML"
        else:
            response.status_code = 422
        return response
    with transaction.atomic():
        if step is None:
            position = (image.steps.aggregate(m=Max("position"))["m"] or 0) + 1
            step = RecipeStep.objects.create(
                image=image,
                position=position,
                type=form.step_type,
                params=form.cleaned_data["params"],
                enabled=form.cleaned_data["enabled"],
            )
            action, before = "recipe.step_added", None
        else:
            before = step.as_dict()
            step.type = form.step_type
            step.params = form.cleaned_data["params"]
            step.enabled = form.cleaned_data["enabled"]
            step.save()
            action = "recipe.step_changed"
        audit.record(
            action,
            actor=request.user,
            image=image,
            target=step,
            before=before,
            after=step.as_dict(),
        )
    return _steps_response(request, image)


@require_POST
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def step_delete(request: HttpRequest, label: str, step_id: int) -> HttpResponse:
    image = _image_or_404(label)
    step = get_object_or_404(RecipeStep, pk=step_id, image=image)
    with transaction.atomic():
        audit.record(
            "recipe.step_removed",
            actor=request.user,
            image=image,
            target=step,
            before=step.as_dict(),
        )
        step.delete()
    return _steps_response(request, image)


@require_POST
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def step_move(request: HttpRequest, label: str, step_id: int) -> HttpResponse:
    """Move a step one place up or down; positions are renumbered 1..n."""
    image = _image_or_404(label)
    get_object_or_404(RecipeStep, pk=step_id, image=image)
    direction = request.POST.get("direction")
    with transaction.atomic():
        before = _recipe_order(image)
        steps = list(image.steps.select_for_update())
        index = next(i for i, s in enumerate(steps) if s.pk == step_id)
        other = index - 1 if direction == "up" else index + 1
        if 0 <= other < len(steps):
            steps[index], steps[other] = steps[other], steps[index]
            for position, step in enumerate(steps, start=1):
                if step.position != position:
                    step.position = position
                    step.save(update_fields=["position"])
            audit.record(
                "recipe.step_moved",
                actor=request.user,
                image=image,
                before={"order": before},
                after={"order": _recipe_order(image)},
            )
    return _steps_response(request, image)


# --- upstream dates ---------------------------------------------------------------------------


@require_POST
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def set_lifecycle_date(request: HttpRequest, label: str) -> HttpResponse:
    image = _image_or_404(label)
    if not image.is_os:
        messages.error(request, "InstantApps follow their base image's upstream dates.")
        return redirect(image.get_absolute_url())
    form = LifecycleDateForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{k}: {' '.join(str(e) for e in v)}" for k, v in form.errors.items())
        messages.error(request, f"The date was not changed: {errors}")
        return redirect(image.get_absolute_url() + "#lifecycle")
    name = form.cleaned_data["field"]
    with transaction.atomic():
        lifecycle, _ = UpstreamLifecycle.objects.select_for_update().get_or_create(image=image)
        before = {name: getattr(lifecycle, name), f"{name}_source": lifecycle.source_of(name)}
        setattr(lifecycle, name, form.cleaned_data["value"])
        setattr(lifecycle, f"{name}_source", DateSource.MANAGER)
        lifecycle.save()
        audit.record(
            "lifecycle.date_set",
            actor=request.user,
            image=image,
            target=lifecycle,
            before=before,
            after={name: form.cleaned_data["value"], f"{name}_source": DateSource.MANAGER},
            message=form.cleaned_data["reason"],
        )
    messages.success(request, "Date saved. Imports will keep it.")
    return redirect(image.get_absolute_url() + "#lifecycle")


@require_POST
@permission_required(roles.IMPORT_EOL, raise_exception=True)
def import_eol(request: HttpRequest) -> HttpResponse:
    """Queue the endoflife.date import on the short-work cluster."""
    from django_q.tasks import async_task

    def enqueue() -> None:
        async_task("catalog.tasks.import_eol_task", task_name="import_eol (dashboard)")

    transaction.on_commit(enqueue)
    audit.record("eol.import_requested", actor=request.user)
    messages.success(request, "EOL import queued; results appear here when it has run.")
    return redirect(reverse("catalog:overview"))


# --- zones and audit ----------------------------------------------------------------------------


@require_GET
def zones_page(request: HttpRequest) -> HttpResponse:
    return render(request, "catalog/zones.html", {"zones": Zone.objects.all()})


@require_POST
@permission_required(roles.MANAGE_ZONES, raise_exception=True)
def zone_toggle(request: HttpRequest, code: str) -> HttpResponse:
    """Disable a zone in one click; enable it only once confirmed, like admin's delete_selected.

    Enabling publishes, then tests, every current version in the zone (`lifecycle.zones`), so
    the first POST shows what will happen and only a second one with `confirm=yes` enables.
    Disabling deletes nothing (images already there stay; publishes queued there are dropped),
    so it stays one click. The form says which it means (`action`), so a double submit, or a
    zone someone changed meanwhile, is never flipped back; without it the zone's state decides.
    """
    zone = get_object_or_404(Zone, code=code)
    action = request.POST.get("action")
    enable = action == "enable" if action in ("enable", "disable") else not zone.enabled
    if enable and not zone.enabled and request.POST.get("confirm") != "yes":
        versions = current_versions()
        # Publishing needs the QCOW2: a version whose artefact is gone is skipped (and audited).
        publishable = [v for v in versions if v.artefact_path]
        context = {"zone": zone, "versions": versions, "publishable": publishable}
        return render(request, "catalog/zone_confirm.html", context)
    with transaction.atomic():
        zone = get_object_or_404(Zone.objects.select_for_update(), code=code)
        changed = zone.enabled != enable
        if changed:
            before = {"enabled": zone.enabled}
            zone.enabled = enable
            # lifecycle.zones queues the publishes on this save, sent once it commits.
            zone.save(update_fields=["enabled"])
            audit.record(
                "zone.enabled" if zone.enabled else "zone.disabled",
                actor=request.user,
                target=zone,
                before=before,
                after={"enabled": zone.enabled},
            )
    if partial_request(request):
        return render(request, "catalog/zones.html#zone-row", {"zone": zone})
    if not changed:
        state = "enabled" if zone.enabled else "disabled"
        messages.info(request, f"Zone {zone.code} was already {state}: nothing changed.")
    elif zone.enabled:
        messages.success(
            request,
            f"Zone {zone.code} enabled: its current versions are queued to be published "
            "there, then tested; the audit log records each.",
        )
    else:
        messages.success(
            request,
            f"Zone {zone.code} disabled: new versions are no longer published there; "
            "images already there stay.",
        )
    return redirect("catalog:zones")


@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    entries = AuditEntry.objects.select_related("actor", "image")
    action = request.GET.get("action", "").strip()
    label = request.GET.get("image", "").strip()
    if action:
        entries = entries.filter(action__startswith=action)
    if label:
        entries = entries.filter(image__label=label)
    page = audit.log_page(entries, request.GET.get("before"), request.GET.get("after"))
    return render(
        request,
        "catalog/audit.html",
        {"page": page, "action": action, "image_label": label, "now": timezone.now()},
    )


@require_GET
def version_page(request: HttpRequest, label: str, arch: str, name: str) -> HttpResponse:
    version = get_object_or_404(
        ImageVersion.objects.select_related("image", "base_version__image"),
        image__label=label,
        arch=arch,
        name=name,
    )
    previous = version.previous()
    upstream = _upstream_manifest(version)
    context = {
        "image": version.image,
        "version": version,
        "previous": previous,
        "diff": diff_manifests(previous.manifest or [], version.manifest or [])
        if previous
        else None,
        "upstream_diff": diff_manifests(upstream, version.manifest or [])
        if upstream is not None
        else None,
        "recipe_steps": [recipes.in_words(step) for step in version.recipe or []],
        "local_images": version.local_images.select_related("zone").order_by(
            "zone__code", "storage_type"
        ),
    }
    return render(request, "catalog/version.html", context)


def _upstream_manifest(version: ImageVersion) -> list[dict] | None:
    """The package list of the image the version's build customized (the upstream image, or
    an InstantApp's base version), read before the recipe's first step; None when the build
    did not record it (versions built before it was, or the reading failed)."""
    recorded = (
        ImageVersion.objects.filter(pk=version.pk, build__stages__name="customize")
        .values_list("build__stages__outputs__upstream_manifest", flat=True)
        .first()
    )
    return recorded if isinstance(recorded, list) else None


SBOM_MEDIA_TYPES = {
    "spdx": ("application/spdx+json", "spdx.json"),
    "cyclonedx": (f"application/vnd.cyclonedx+json; version={sbom.CYCLONEDX_VERSION}", "cdx.json"),
}


@require_GET
def version_sbom(request: HttpRequest, label: str, arch: str, name: str, fmt: str) -> HttpResponse:
    """A version's package manifest as an SBOM download (catalog.sbom): one query."""
    version = get_object_or_404(
        ImageVersion.objects.select_related("image__base_image"),
        image__label=label,
        arch=arch,
        name=name,
    )
    try:
        document = sbom.FORMATS[fmt](version)
    except sbom.NoManifest:
        return JsonResponse(
            {"error": "No package manifest is recorded for this version: it has no SBOM."},
            status=404,
        )
    media_type, suffix = SBOM_MEDIA_TYPES[fmt]
    response = HttpResponse(json.dumps(document, indent=2).encode(), content_type=media_type)
    response["Content-Disposition"] = f'attachment; filename="{label}-{name}-{arch}.{suffix}"'
    return response
