"""The dashboard's roles as Django groups with permissions.

Roles are cumulative: a catalogue manager can do what a viewer does, a release manager what
a catalogue manager does. Administrators are superusers (or members of the Administrator
group). Every view that changes state checks one of these permissions on the server.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import Group, Permission

log = logging.getLogger(__name__)

VIEWER = "Viewer"
CATALOGUE_MANAGER = "Catalogue manager"
RELEASE_MANAGER = "Release manager"
ADMINISTRATOR = "Administrator"

# The permission each kind of action needs ("app_label.codename").
EDIT_CATALOG = "catalog.edit_catalog"
IMPORT_EOL = "catalog.import_eol"
RUN_BUILDS = "builds.run_builds"
RELEASE = "catalog.release_image"
MANAGE_DEPRECATION = "catalog.manage_deprecation"
CONTACT_CUSTOMERS = "catalog.contact_customers"
MANAGE_ZONES = "catalog.manage_zones"
RUN_JANITOR = "builds.run_janitor"

_VIEW = [
    "catalog.view_zone",
    "catalog.view_category",
    "catalog.view_image",
    "catalog.view_upstreamsource",
    "catalog.view_upstreamlifecycle",
    "catalog.view_recipestep",
    "catalog.view_imageversion",
    "catalog.view_localimage",
    "catalog.view_auditentry",
    "builds.view_build",
]
_MANAGE = [*_VIEW, EDIT_CATALOG, IMPORT_EOL, RUN_BUILDS]
_RELEASE = [*_MANAGE, RELEASE, MANAGE_DEPRECATION, CONTACT_CUSTOMERS]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _VIEW,
    CATALOGUE_MANAGER: _MANAGE,
    RELEASE_MANAGER: _RELEASE,
    ADMINISTRATOR: [*_RELEASE, MANAGE_ZONES, RUN_JANITOR],
}


def sync_roles(**_: object) -> None:
    """Create the role groups and give them exactly their permissions (idempotent)."""
    for role, names in ROLE_PERMISSIONS.items():
        group, _created = Group.objects.get_or_create(name=role)
        wanted = []
        for name in names:
            app_label, codename = name.split(".", 1)
            perm = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is None:
                log.debug("permission %s does not exist yet", name)
                continue
            wanted.append(perm)
        group.permissions.set(wanted)


def role_of(user: object) -> str:
    """The highest role a user holds, for display."""
    if getattr(user, "is_superuser", False):
        return ADMINISTRATOR
    names = {g.name for g in user.groups.all()}  # type: ignore[attr-defined]
    for role in (ADMINISTRATOR, RELEASE_MANAGER, CATALOGUE_MANAGER, VIEWER):
        if role in names:
            return role
    return VIEWER
