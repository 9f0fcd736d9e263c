"""Image requests: the public form and its signed links; the managers' triage pages.

The pages under /lifecycle/requests/public/ need no session (customers use them); the list
and a request's page need a login, and changing a status needs catalog.edit_catalog.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from catalog import audit, roles
from config.client_ip import client_ip
from lifecycle import image_requests
from lifecycle.models import ImageRequest, Language, RequestStatus

SORTS = {
    "count": ("-confirmed_count", "-created_at", "-id"),
    "new": ("-created_at", "-id"),
    "name": ("normalized_name", "kind", "id"),
}
PAGE_SIZE = 100


# --- public ----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@vary_on_headers("Accept-Language")
def request_new(request: HttpRequest) -> HttpResponse:
    """Public: ask for a new image or InstantApp; the address is confirmed by email."""
    browser = image_requests.language_from_accept(request.headers.get("Accept-Language", ""))
    form = image_requests.ImageRequestForm(request.POST or None, default_language=browser)
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "lifecycle/requests/new.html", {"form": form}, status=400)
        data = form.cleaned_data
        ip = client_ip(request)
        if image_requests.is_rate_limited(ip, data["email"]):
            window = int(image_requests.rate_window().total_seconds() // 60)
            context = {"limit": image_requests.rate_limit(), "minutes": window}
            return render(request, "lifecycle/requests/rate_limited.html", context, status=429)
        requester = image_requests.submit(
            data["kind"], data["name"], data["description"], data["email"], ip, data["language"]
        )
        if not requester.is_confirmed:
            # Through the queue: a slow or dead mail server must not hold a web thread.
            _enqueue_confirmation(requester.pk)
        # The same answer whether or not the address asked before: it tells nobody who asked.
        return redirect(reverse("lifecycle:request_thanks") + f"?language={data['language']}")
    return render(request, "lifecycle/requests/new.html", {"form": form})


@require_GET
@vary_on_headers("Accept-Language")
def request_thanks(request: HttpRequest) -> HttpResponse:
    """Public: "check your inbox", in the language chosen on the form."""
    hours = int(image_requests.confirm_max_age().total_seconds() // 3600)
    language = request.GET.get("language", "")
    if language not in Language.values:
        language = image_requests.language_from_accept(request.headers.get("Accept-Language", ""))
    context = {"hours": hours, "language": language}
    return render(request, "lifecycle/requests/thanks.html", context)


@require_http_methods(["GET", "POST"])
def request_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Public: GET asks to confirm (mail scanners fetch links), POST counts the requester."""
    requester = image_requests.requester_from_confirmation(token)
    if requester is None:
        return render(request, "lifecycle/requests/confirm.html", {"invalid": True}, status=400)
    done = requester.is_confirmed
    if request.method == "POST":
        requester.confirm()
        done = True
    return render(
        request, "lifecycle/requests/confirm.html", {"requester": requester, "done": done}
    )


@require_http_methods(["GET", "POST"])
def request_unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Public: stop the status emails of one request (GET asks, POST does)."""
    requester = image_requests.requester_from_unsubscribe(token)
    if requester is None:
        return render(request, "lifecycle/requests/unsubscribe.html", {"invalid": True}, status=400)
    if request.method == "POST":
        requester.unsubscribe()
    return render(
        request,
        "lifecycle/requests/unsubscribe.html",
        {"requester": requester, "done": requester.unsubscribed_at is not None},
    )


# --- triage ----------------------------------------------------------------------------------


@require_GET
@login_required
def request_list(request: HttpRequest) -> HttpResponse:
    """Confirmed requests with their number of requesters, sortable, filterable by status."""
    sort = request.GET.get("sort", "count")
    sort = sort if sort in SORTS else "count"
    status = request.GET.get("status", "")
    status = status if status in RequestStatus.values else ""
    rows = ImageRequest.objects.confirmed()
    if status:
        rows = rows.filter(status=status)
    page = Paginator(rows.order_by(*SORTS[sort]), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "rows": page.object_list,
        "page": page,
        "sort": sort,
        "status": status,
        "statuses": RequestStatus.choices,
    }
    return render(request, "lifecycle/requests/list.html", context)


@require_GET
@login_required
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One request: what the requesters wrote, its history and the triage form."""
    item = get_object_or_404(ImageRequest.objects.with_counts(), pk=pk)
    form = image_requests.StatusForm(initial={"status": item.status, "note": item.note})
    return render(request, "lifecycle/requests/detail.html", _detail_context(item, form))


def _detail_context(item: ImageRequest, form: image_requests.StatusForm) -> dict:
    return {
        "item": item,
        "form": form,
        "descriptions": [
            r.description
            for r in item.requesters.filter(confirmed_at__isnull=False).exclude(description="")
        ],
        "changes": item.status_changes.select_related("changed_by")[:50],
    }


@require_POST
@permission_required(roles.EDIT_CATALOG, raise_exception=True)
def request_status(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a request's status; its confirmed requesters are emailed (once each)."""
    item = get_object_or_404(ImageRequest.objects.with_counts(), pk=pk)
    form = image_requests.StatusForm(request.POST)
    if not form.is_valid():
        return render(
            request, "lifecycle/requests/detail.html", _detail_context(item, form), status=400
        )
    before = {"status": item.status, "note": item.note}
    with transaction.atomic():
        change = item.change_status(
            form.cleaned_data["status"], form.cleaned_data["note"], request.user
        )
        if change is None:
            messages.info(request, "Nothing changed.")
            return redirect(item)
        audit.record(
            "image_request.status",
            actor=request.user,
            target=item,
            before=before,
            after={"status": item.status, "note": item.note},
            message=f"{item.name}: {before['status']} -> {item.status}",
        )
        _enqueue_status_emails(change.pk)
    messages.success(
        request, f"{item.name} is now {item.get_status_display().lower()}; requesters are told."
    )
    return redirect(item)


def _enqueue_confirmation(requester_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            image_requests.CONFIRMATION_TASK,
            requester_id,
            task_name=f"request-confirm-{requester_id}",
            group="image-requests",
        )
    )


def _enqueue_status_emails(change_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task(
            "lifecycle.tasks.send_request_status_emails_task",
            change_id,
            task_name=f"request-status-{change_id}",
            group="image-requests",
        )
    )
