"""Customers page: the customer list, the last usage refreshes and the CSV import.

Both views need catalog.contact_customers (release managers): customer addresses are personal
data. An import is audited.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from catalog import audit, roles
from lifecycle.customers import import_customers
from lifecycle.models import Customer, Usage, UsageRefresh

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
PAGE_SIZE = 100


def _context(request: HttpRequest) -> dict:
    page = Paginator(Customer.objects.order_by("name", "id"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return {
        "customers": page.object_list,
        "page": page,
        "total": page.paginator.count,
        "refreshes": UsageRefresh.objects.all()[:5],
        "usages": Usage.objects.count(),
    }


@require_GET
@permission_required(roles.CONTACT_CUSTOMERS, raise_exception=True)
def customers(request: HttpRequest) -> HttpResponse:
    """The customer list with the CSV upload form and the last usage refreshes."""
    return render(request, "lifecycle/notices/customers.html", _context(request))


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
            {**_context(request), "errors": result.errors},
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
