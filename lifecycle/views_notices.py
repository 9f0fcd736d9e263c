"""Customers, usage and notices pages; the public unsubscribe page.

Every page but unsubscribe needs catalog.contact_customers (release managers): customer
addresses are personal data. Decisions on uncertain notices are audited.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog import audit, roles
from catalog.models import Image
from lifecycle import emails, notices
from lifecycle.customers import import_customers
from lifecycle.models import Customer, Notice, NoticeState, Usage, UsageRefresh

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@require_GET
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def customers(request: HttpRequest) -> HttpResponse:
    """The customer list with the CSV upload form and the last usage refreshes."""
    rows = Customer.objects.order_by("name", "id")[:500]
    return render(
        request,
        "lifecycle/notices/customers.html",
        {
            "customers": rows,
            "total": Customer.objects.count(),
            "refreshes": UsageRefresh.objects.all()[:5],
            "usages": Usage.objects.count(),
        },
    )


@require_POST
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def customers_import(request: HttpRequest) -> HttpResponse:
    """Import a CSV of customers, all or nothing; rejected lines are listed."""
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a CSV file.")
        return redirect("lifecycle:customers")
    if upload.size and upload.size > MAX_UPLOAD_BYTES:
        messages.error(request, "The file is larger than 20 MB.")
        return redirect("lifecycle:customers")
    result = import_customers(upload.read())
    if not result.ok:
        return render(
            request,
            "lifecycle/notices/customers.html",
            {
                "customers": Customer.objects.order_by("name", "id")[:500],
                "total": Customer.objects.count(),
                "refreshes": UsageRefresh.objects.all()[:5],
                "usages": Usage.objects.count(),
                "errors": result.errors,
            },
            status=400,
        )
    audit.record(
        "customers.import",
        actor=request.user,
        message=f"{result.created} created, {result.updated} updated from {upload.name}",
    )
    messages.success(
        request, f"Imported: {result.created} new customers, {result.updated} updated."
    )
    return redirect("lifecycle:customers")


@require_GET
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def notices_attention(request: HttpRequest) -> HttpResponse:
    """Notices that need a person: uncertain (resend or mark sent) and failed."""
    rows = (
        Notice.objects.filter(state__in=[NoticeState.UNCERTAIN, NoticeState.FAILED])
        .select_related("customer", "image")
        .order_by("state", "image__label", "customer__name")[:1000]
    )
    return render(request, "lifecycle/notices/attention.html", {"notices": rows})


@require_POST
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def notice_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """A release manager's decision on an uncertain (or failed) notice: resend or sent."""
    notice = get_object_or_404(Notice.objects.select_related("customer", "image"), pk=pk)
    action = request.POST.get("action")
    before = audit.snapshot(notice, ["state", "sent_at", "due_at"])
    if action == "resend":
        done = notice.resend()
    elif action == "mark_sent":
        done = notice.confirm_sent()
    else:
        messages.error(request, "Unknown decision.")
        return redirect("lifecycle:notices")
    if done:
        audit.record(
            f"notice.{action}",
            actor=request.user,
            image=notice.image,
            target=notice,
            before=before,
            after=audit.snapshot(notice, ["state", "sent_at", "due_at"]),
            message=request.POST.get("reason", ""),
        )
        messages.success(request, f"{notice}: {action.replace('_', ' ')}.")
    else:
        messages.error(request, f"{notice} is {notice.get_state_display().lower()}: nothing done.")
    return redirect(request.POST.get("next") or reverse("lifecycle:notices"))


@require_GET
def notices_panel(request: HttpRequest, label: str) -> HttpResponse:
    """The image page's region: planned, sent, failed and uncertain notices per customer."""
    image = get_object_or_404(Image, label=label)
    allowed = request.user.has_perm(roles.CONTACT_CUSTOMERS)
    rows = []
    counts: dict[str, int] = {}
    if allowed:
        notices_qs = (
            Notice.objects.filter(image=image)
            .exclude(state=NoticeState.SKIPPED)
            .select_related("customer")
            .order_by("customer__name", "customer_id", "due_at")
        )
        by_customer: dict[int, dict] = {}
        for notice in notices_qs[:2000]:
            entry = by_customer.setdefault(
                notice.customer_id, {"customer": notice.customer, "notices": []}
            )
            entry["notices"].append(notice)
            counts[notice.state] = counts.get(notice.state, 0) + 1
        rows = list(by_customer.values())
    return render(
        request,
        "lifecycle/notices/panel.html",
        {
            "image": image,
            "allowed": allowed,
            "rows": rows,
            "counts": counts,
            "customers": Customer.objects.filter(usages__image=image).distinct()[:200]
            if allowed
            else [],
            "last_refresh": UsageRefresh.objects.first(),
        },
    )


@require_GET
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def notice_preview(request: HttpRequest, label: str) -> HttpResponse:
    """The rendered email (subject, text, HTML) a chosen customer would get next."""
    image = get_object_or_404(Image.objects.select_related("replacement"), label=label)
    choices = Customer.objects.filter(usages__image=image).distinct()[:200]
    customer_id = request.GET.get("customer")
    customer = None
    if customer_id and customer_id.isdigit():
        customer = Customer.objects.filter(pk=int(customer_id)).first()
    customer = customer or (choices[0] if choices else None)
    rendered = None
    if customer is not None:
        notice = notices.preview_notice(image, customer)
        usages = Usage.objects.filter(customer=customer, image=image)
        rendered = emails.render_notice(notice, usages)
    return render(
        request,
        "lifecycle/notices/preview.html",
        {"image": image, "customer": customer, "choices": choices, "rendered": rendered},
    )


@require_POST
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def notice_send_test(request: HttpRequest, label: str) -> HttpResponse:
    """Send the preview to the logged-in user's own address."""
    image = get_object_or_404(Image.objects.select_related("replacement"), label=label)
    customer = get_object_or_404(Customer, pk=request.POST.get("customer") or 0)
    preview = reverse("lifecycle:notice_preview", args=[label]) + f"?customer={customer.pk}"
    if not request.user.email:
        messages.error(request, "Your account has no email address.")
        return redirect(preview)
    error = notices.send_test(image, customer, request.user.email)
    if error:
        messages.error(request, f"The test could not be sent: {error}")
    else:
        messages.success(request, f"A test was sent to {request.user.email}.")
    return redirect(preview)


@csrf_exempt  # RFC 8058 one-click: mail clients POST without our CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Public: GET asks to confirm (link scanners fetch GET), POST unsubscribes."""
    customer_id = emails.customer_id_from_token(token)
    customer = Customer.objects.filter(pk=customer_id).first() if customer_id else None
    if customer is None:
        return render(request, "lifecycle/notices/unsubscribe.html", {"invalid": True}, status=400)
    done = False
    if request.method == "POST":
        if customer.unsubscribe():
            audit.record(
                "customer.unsubscribe", target=customer, message="unsubscribed by email link"
            )
        done = True
    return render(
        request,
        "lifecycle/notices/unsubscribe.html",
        {"customer": customer, "done": done or customer.unsubscribed_at is not None},
    )
