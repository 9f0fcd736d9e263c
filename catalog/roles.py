"""The dashboard's roles as Django groups with permissions.

Roles are cumulative: a catalogue manager can do what a viewer does, a release manager what
a catalogue manager does. Administrators are superusers or members of the Administrator
group; the group also manages users (Django's user permissions, and staff status, which
follows membership: `sync_staff_status`). Every view that changes state checks one of these
permissions on the server; a signed-in user with no role sees nothing but the "no access
yet" page (catalog.middleware).
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission

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
ADOPT_MARKETPLACE = "lifecycle.adopt_marketplace"

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

# Administrators manage users in Django's admin: they add people, put them in groups and
# lift login lockouts (django-axes' access attempts). Groups themselves (what each role may
# do) are defined here and reset by every `migrate`, so they are only shown.
_MANAGE_USERS = [
    "auth.view_user",
    "auth.add_user",
    "auth.change_user",
    "auth.delete_user",
    "auth.view_group",
    "axes.view_accessattempt",
    "axes.delete_accessattempt",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _VIEW,
    CATALOGUE_MANAGER: _MANAGE,
    RELEASE_MANAGER: _RELEASE,
    ADMINISTRATOR: [*_RELEASE, MANAGE_ZONES, RUN_JANITOR, ADOPT_MARKETPLACE, *_MANAGE_USERS],
}
ROLES = (ADMINISTRATOR, RELEASE_MANAGER, CATALOGUE_MANAGER, VIEWER)  # highest first


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


def role_of(user: AbstractBaseUser) -> str | None:
    """The highest role a user holds (superusers are Administrators), or None.

    Kept on the user object for the request, like Django's permission cache: the middleware
    and the page's context both ask.
    """
    if getattr(user, "is_superuser", False):
        return ADMINISTRATOR
    if not hasattr(user, "_factory_role"):
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))  # type: ignore[attr-defined]
        user._factory_role = next((role for role in ROLES if role in names), None)  # type: ignore[attr-defined]
    return user._factory_role  # type: ignore[attr-defined]


def has_role(user: AbstractBaseUser) -> bool:
    """Whether a signed-in user may see the dashboard at all."""
    return role_of(user) is not None


def sync_staff_status(
    sender: type, instance: object, action: str, reverse: bool, pk_set: set | None, **_: object
) -> None:
    """Staff status (the Django admin) follows membership of the Administrator group.

    Connected to m2m_changed of User.groups, whichever side changes it: `user.groups.add(g)`
    or `group.user_set.add(user)`. Superusers are left as they are.
    """
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        user = instance
        if user.is_superuser:  # type: ignore[attr-defined]
            return
        administrator = user.groups.filter(name=ADMINISTRATOR).exists()  # type: ignore[attr-defined]
        if user.is_staff != administrator:  # type: ignore[attr-defined]
            user.is_staff = administrator  # type: ignore[attr-defined]
            type(user).objects.filter(pk=user.pk).update(is_staff=administrator)  # type: ignore[attr-defined]
        return
    if getattr(instance, "name", None) != ADMINISTRATOR:
        return
    users = get_user_model().objects.filter(is_superuser=False)
    if pk_set is not None:
        users = users.filter(pk__in=pk_set)
    # (post_clear gives no pk_set: the former members are unknown, so every staff user is
    # checked.)
    members = users.filter(groups__name=ADMINISTRATOR).values("pk")
    users.filter(pk__in=members, is_staff=False).update(is_staff=True)
    users.exclude(pk__in=members).filter(is_staff=True).update(is_staff=False)
