# Written by hand on 2026-12-09: a data migration of the catalog app's audit entries, kept in
# the lifecycle app because it reads lifecycle's customers.

import re

from django.db import migrations
from django.db.models import Q

# What audit entries held before customers were named by id: `str(customer)`, that is
# "Name <email>", as the target of "customer.unsubscribe". The log is read by every Viewer.
EMAIL = re.compile(r"[^\s<>@]+@[^\s<>@]+")


def _label(pk):
    return f"customer {pk}"


def name_customers_by_id(apps, schema_editor):
    """Rewrite stored audit entries so that they name customers by id only: the target of an
    entry about a customer, and any "Name <email>" or address of a customer in any entry."""
    AuditEntry = apps.get_model("catalog", "AuditEntry")
    Customer = apps.get_model("lifecycle", "Customer")
    for entry in AuditEntry.objects.filter(target_type="lifecycle.Customer").iterator():
        label = _label(entry.target_id)
        if entry.target_repr != label:
            AuditEntry.objects.filter(pk=entry.pk).update(target_repr=label)
    mentions = AuditEntry.objects.filter(Q(target_repr__contains="@") | Q(message__contains="@"))
    for entry in mentions.iterator():
        texts = {"target_repr": entry.target_repr, "message": entry.message}
        found = {m.group(0) for text in texts.values() for m in EMAIL.finditer(text)}
        customers = Customer.objects.filter(email__in=found).values_list("pk", "name", "email")
        customers = list(customers)
        if not customers:
            continue
        for field, text in texts.items():
            for pk, name, email in customers:
                text = text.replace(f"{name} <{email}>", _label(pk)).replace(email, _label(pk))
            texts[field] = text
        AuditEntry.objects.filter(pk=entry.pk).update(
            target_repr=texts["target_repr"][:255], message=texts["message"]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_image_lifecycle_error_date_bounds"),
        ("lifecycle", "0003_requester_language"),
    ]

    operations = [
        migrations.RunPython(name_customers_by_id, migrations.RunPython.noop),
    ]
