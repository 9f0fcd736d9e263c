"""Notices pages: those needing a decision, an image's panel, the preview and the test send;
the public unsubscribe page.

Every page but unsubscribe needs catalog.contact_customers (release managers): customer
addresses are personal data. Decisions on uncertain notices are audited.
"""

from __future__ import annotations

from typing import Any

from csp.constants import NONE, SELF, UNSAFE_INLINE
from csp.decorators import csp
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog import audit, roles
from catalog.models import Image
from lifecycle import emails, notices
from lifecycle.models import Customer, Notice, NoticeState, Usage, UsageRefresh


class CustomerChoiceForm(forms.Form):
    """The customer a preview or a test notice is for: an id from the browser, checked here."""

    customer = forms.ModelChoiceField(
        queryset=Customer.objects.all(),
        error_messages={
            "required": "Choose a customer.",
            "invalid_choice": "Choose a customer from the list.",
        },
    )

    def __init__(self, *args: Any, required: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["customer"].required = required


class NoticeDecisionForm(forms.Form):
    """A release manager's decision on an uncertain or failed notice, and where to go next."""

    action = forms.ChoiceField(
        choices=[("resend", "Resend"), ("mark_sent", "Mark sent")],
        error_messages={"required": "Choose a decision.", "invalid_choice": "Unknown decision."},
    )
    reason = forms.CharField(max_length=2000, required=False)
    next = forms.CharField(max_length=2000, required=False)

    def __init__(self, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_next(self) -> str:
        value = self.cleaned_data["next"]
        if value and not url_has_allowed_host_and_scheme(
            value,
            allowed_hosts={self.request.get_host()},
            require_https=self.request.is_secure(),
        ):
            raise forms.ValidationError("The page to go back to must be a page of this site.")
        return value


PAGE_SIZE = 100


def _form_errors(form: forms.Form) -> list[str]:
    return [str(error) for errors in form.errors.values() for error in errors]


def _attention(
    request: HttpRequest, errors: list[str] | None = None, status: int = 200
) -> HttpResponse:
    rows = (
        Notice.objects.filter(state__in=[NoticeState.UNCERTAIN, NoticeState.FAILED])
        .select_related("customer", "image")
        .order_by("state", "image__label", "customer__name", "id")
    )
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"notices": page.object_list, "page": page, "errors": errors or []}
    return render(request, "lifecycle/notices/attention.html", context, status=status)


@require_GET
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def notices_attention(request: HttpRequest) -> HttpResponse:
    """Notices that need a person: uncertain (resend or mark sent) and failed."""
    return _attention(request)


@require_POST
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def notice_decide(request: HttpRequest, pk: int) -> HttpResponse:
    """A release manager's decision on an uncertain (or failed) notice: resend or sent.

    A bad decision or a `next` page off this site (an open redirect) is refused before
    anything changes.
    """
    notice = get_object_or_404(Notice.objects.select_related("customer", "image"), pk=pk)
    form = NoticeDecisionForm(request.POST, request=request)
    if not form.is_valid():
        return _attention(request, _form_errors(form), status=400)
    action = form.cleaned_data["action"]
    before = audit.snapshot(notice, ["state", "sent_at", "due_at"])
    done = notice.resend() if action == "resend" else notice.confirm_sent()
    if done:
        audit.record(
            f"notice.{action}",
            actor=request.user,
            image=notice.image,
            target=notice,
            before=before,
            after=audit.snapshot(notice, ["state", "sent_at", "due_at"]),
            message=form.cleaned_data["reason"],
        )
        messages.success(request, f"{notice}: {action.replace('_', ' ')}.")
    else:
        messages.error(request, f"{notice} is {notice.get_state_display().lower()}: nothing done.")
    return redirect(form.cleaned_data["next"] or reverse("lifecycle:notices"))


PANEL_CUSTOMERS = 50


@require_GET
def notices_panel(request: HttpRequest, label: str) -> HttpResponse:
    """The image page's region: planned, sent, failed and uncertain notices per customer.

    The counts cover every notice of the image; the customers come PANEL_CUSTOMERS a page
    (by name), each with all their notices, so that an image used by a hundred thousand
    customers costs what a small one does.
    """
    image = get_object_or_404(Image, label=label)
    allowed = request.user.has_perm(roles.CONTACT_CUSTOMERS)
    rows: list[dict] = []
    counts: dict[str, int] = {}
    page = None
    if allowed:
        of_image = Notice.objects.filter(image=image).exclude(state=NoticeState.SKIPPED)
        counts = {
            row["state"]: row["n"]
            for row in of_image.order_by("state").values("state").annotate(n=Count("id"))
        }
        customers = Customer.objects.filter(pk__in=of_image.values("customer_id"))
        page = Paginator(customers.order_by("name", "id"), PANEL_CUSTOMERS).get_page(
            request.GET.get("page")
        )
        by_customer = {c.pk: {"customer": c, "notices": []} for c in page.object_list}
        for notice in of_image.filter(customer_id__in=list(by_customer)).order_by("due_at", "id"):
            by_customer[notice.customer_id]["notices"].append(notice)
        rows = list(by_customer.values())
    return render(
        request,
        "lifecycle/notices/panel.html",
        {
            "image": image,
            "allowed": allowed,
            "rows": rows,
            "page": page,
            "counts": counts,
            "has_customers": allowed and Usage.objects.filter(image=image).exists(),
            "last_refresh": UsageRefresh.objects.first(),
        },
    )


def _rendered(image: Image, customer: Customer) -> emails.Rendered:
    """The next notice `customer` would get about `image`, rendered, for a preview."""
    notice = notices.preview_notice(image, customer)
    return emails.render_notice(notice, Usage.objects.filter(customer=customer, image=image))


def _preview(
    request: HttpRequest,
    image: Image,
    customer: Customer | None,
    errors: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    choices = Customer.objects.filter(usages__image=image).distinct()[:200]
    customer = customer or (choices[0] if choices else None)
    rendered = _rendered(image, customer) if customer is not None else None
    return render(
        request,
        "lifecycle/notices/preview.html",
        {
            "image": image,
            "customer": customer,
            "choices": choices,
            "rendered": rendered,
            "errors": errors or [],
        },
        status=status,
    )


@require_GET
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def notice_preview(request: HttpRequest, label: str) -> HttpResponse:
    """The rendered email (subject, text, HTML) a chosen customer would get next."""
    image = get_object_or_404(Image.objects.select_related("replacement"), label=label)
    form = CustomerChoiceForm(request.GET, required=False)
    if not form.is_valid():
        return _preview(request, image, None, _form_errors(form), status=400)
    return _preview(request, image, form.cleaned_data["customer"])


# The email's own HTML, shown in the preview's sandboxed frame as a mail client shows it: its
# inline styles apply (the site's policy forbids them), nothing else loads or runs, and only
# this site may frame it.
EMAIL_PREVIEW_POLICY = {
    "default-src": [NONE],
    "style-src": [UNSAFE_INLINE],
    "img-src": ["data:"],
    "base-uri": [NONE],
    "form-action": [NONE],
    "frame-ancestors": [SELF],
    "sandbox": [""],
}


@require_GET
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
@xframe_options_sameorigin
@csp(EMAIL_PREVIEW_POLICY)  # type: ignore[arg-type]  # its stubs allow views of one argument
def notice_preview_html(request: HttpRequest, label: str) -> HttpResponse:
    """The HTML part of the email a chosen customer would get next, alone."""
    image = get_object_or_404(Image.objects.select_related("replacement"), label=label)
    form = CustomerChoiceForm(request.GET, required=True)
    if not form.is_valid():
        return HttpResponse("; ".join(_form_errors(form)), status=400, content_type="text/plain")
    customer = form.cleaned_data["customer"]
    if not Usage.objects.filter(customer=customer, image=image).exists():
        return HttpResponse(
            "This customer does not run this image.", status=404, content_type="text/plain"
        )
    return HttpResponse(_rendered(image, customer).html, content_type="text/html; charset=utf-8")


@require_POST
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def notice_send_test(request: HttpRequest, label: str) -> HttpResponse:
    """Send the preview to the logged-in user's own address."""
    image = get_object_or_404(Image.objects.select_related("replacement"), label=label)
    form = CustomerChoiceForm(request.POST)
    if not form.is_valid():
        return _preview(request, image, None, _form_errors(form), status=400)
    customer = form.cleaned_data["customer"]
    preview = reverse("lifecycle:notice_preview", args=[label]) + f"?customer={customer.pk}"
    user = request.user
    assert user.is_authenticated, "permission_required lets only signed-in users in"
    if not user.email:
        messages.error(request, "Your account has no email address.")
        return redirect(preview)
    error = notices.send_test(image, customer, user.email)
    if error:
        messages.error(request, f"The test could not be sent: {error}")
    else:
        messages.success(request, f"A test was sent to {user.email}.")
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
