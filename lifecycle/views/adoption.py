"""Adopting the Marketplace (lifecycle.adoption): the page of what adoption found, the
administrators' Adopt button (after a confirmation), and a manager's map or ignore of a label
with no image."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog import roles
from catalog.choices import ImageState, Origin
from catalog.models import AuditEntry, Image
from cloud.retries import CloudError
from lifecycle import adoption
from lifecycle.models import LabelDecision, MarketplaceLabel


def _context() -> dict:
    return {
        "labels": list(MarketplaceLabel.objects.select_related("image", "decided_by")),
        "adopted": list(
            Image.objects.filter(versions__origin=Origin.ADOPTED)
            .annotate(adopted_versions=Count("versions", filter=Q(versions__origin=Origin.ADOPTED)))
            .order_by("label")
            .only("label", "name", "state")
        ),
        "targets": list(
            Image.objects.exclude(state=ImageState.RETIRED)
            .order_by("label")
            .values_list("label", flat=True)
        ),
        "last_run": AuditEntry.objects.filter(action=adoption.ADOPTION_ACTION)
        .only("created_at", "actor_name", "message")
        .first(),
        "pending": LabelDecision.PENDING,
    }


@require_GET
def adoption_page(request: HttpRequest) -> HttpResponse:
    return render(request, "lifecycle/adoption/page.html", _context())


def _report_messages(request: HttpRequest, report: adoption.Report) -> None:
    (messages.success if report.changed else messages.info)(request, report.summary())
    for problem in report.problems:
        messages.warning(request, problem)


@require_http_methods(["GET", "POST"])
@permission_required(roles.ADOPT_MARKETPLACE, raise_exception=True)
def adoption_run(request: HttpRequest) -> HttpResponse:
    """GET (or POST without confirm=yes): what adoption does. POST confirm=yes: adopt."""
    if request.method == "GET" or request.POST.get("confirm") != "yes":
        return render(request, "lifecycle/adoption/confirm.html", _context())
    try:
        report = adoption.adopt(request.user)
    except CloudError as exc:
        messages.error(request, f"The Marketplace cannot be read; nothing was recorded. {exc}")
        return redirect("lifecycle:adoption")
    _report_messages(request, report)
    return redirect("lifecycle:adoption")


@require_POST
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def label_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """Map a label to an image (action=map, image=<label>; its versions are adopted at once
    when the Marketplace can be read), or ignore it (action=ignore)."""
    listed = get_object_or_404(MarketplaceLabel, pk=pk)
    action = request.POST.get("action")
    if action == "ignore":
        adoption.ignore_label(listed, request.user)
        messages.success(request, f"Marketplace label {listed.label} ignored.")
        return redirect("lifecycle:adoption")
    if action != "map":
        messages.error(request, "Choose to map the label to an image or to ignore it.")
        return redirect("lifecycle:adoption")
    image = Image.objects.filter(label=(request.POST.get("image") or "").strip()).first()
    if image is None:
        messages.error(request, f"Map {listed.label} to which image? Give an image's label.")
        return redirect("lifecycle:adoption")
    try:
        adoption.map_label(listed, image, request.user)
    except adoption.DecisionError as exc:
        messages.error(request, str(exc))
        return redirect("lifecycle:adoption")
    messages.success(request, f"Marketplace label {listed.label} mapped to {image.label}.")
    try:
        report = adoption.adopt(request.user, labels={listed.label})
    except CloudError as exc:
        messages.warning(
            request,
            f"Its versions are adopted at the next run: the Marketplace cannot be read now. {exc}",
        )
        return redirect("lifecycle:adoption")
    _report_messages(request, report)
    return redirect("lifecycle:adoption")
