"""Template context shared by every page."""

from __future__ import annotations

from django.http import HttpRequest

from catalog import roles as role_defs


def roles(request: HttpRequest) -> dict:
    """The signed-in user's role and what it may do, so templates show only usable buttons.

    Hiding a button is a courtesy: every view checks the same permission on the server.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "user_role": role_defs.role_of(user),
        "can_edit_catalog": user.has_perm(role_defs.EDIT_CATALOG),
        "can_import_eol": user.has_perm(role_defs.IMPORT_EOL),
        "can_run_builds": user.has_perm(role_defs.RUN_BUILDS),
        "can_release": user.has_perm(role_defs.RELEASE),
    }
