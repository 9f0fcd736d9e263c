"""Members of the Administrator group are staff (they manage users in the Django admin).

From now on staff status follows membership (catalog.roles.sync_staff_status); this gives it
to the members the group already had. The group's permissions, user management included, are
set by catalog.roles.sync_roles after every migrate.
"""

from __future__ import annotations

from django.db import migrations


def administrators_are_staff(apps, schema_editor) -> None:
    User = apps.get_model("auth", "User")
    members = User.objects.filter(groups__name="Administrator").values("pk")
    User.objects.filter(pk__in=members, is_superuser=False, is_staff=False).update(is_staff=True)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("catalog", "0003_image_lifecycle_error_date_bounds"),
    ]

    operations = [migrations.RunPython(administrators_are_staff, migrations.RunPython.noop)]
