"""Every URL pattern of the resolver, derived from the URL configuration (so a new one is
covered without editing this file, or fails here until it is placed):

- without a session, each is protected (sent to the login page, or refused with 401 where
  the view authenticates scripts itself) or on the explicit public list with its reason;
- every endpoint that accepts POST is in the role table below, and refuses (403) every role
  under the one it needs while the roles from it on get past the permission check. A new
  POST endpoint without a permission check, or without an entry, fails this test.

The Django admin has its own permission system (it is read-only for state, see
catalog/admin.py) and is left to its own tests; only its entry is swept.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from catalog import roles

pytestmark = pytest.mark.django_db

# Reachable without a session, and why.
PUBLIC = {
    "login": "the login page",
    "healthz": "the load balancer's health check",
    "lifecycle:unsubscribe": "the signed one-click unsubscribe link in customers' emails",
    "lifecycle:request_new": "the public image request form",
    "lifecycle:request_thanks": "the public form's thank-you page",
    "lifecycle:request_confirm": "the signed confirmation link a requester gets by email",
    "lifecycle:request_unsubscribe": "the signed stop link a requester gets by email",
}
# Views that authenticate the request themselves, and how (their own refusals count).
SELF_AUTHENTICATING = {
    "lifecycle:feed": "a session or a bearer token (401 for a script, login for a browser)",
}
# POST endpoints that need no role, and why.
ROLE_FREE_POSTS = {
    **PUBLIC,
    "logout": "one's own session",
    "password_change": "one's own password (the old one is asked)",
}
# The lowest role that may POST to each state-changing endpoint (roles are cumulative).
RANKS = [roles.VIEWER, roles.CATALOGUE_MANAGER, roles.RELEASE_MANAGER, roles.ADMINISTRATOR]
NEEDS = {
    "builds:rebuild": roles.CATALOGUE_MANAGER,
    "builds:cancel": roles.CATALOGUE_MANAGER,
    "builds:retry": roles.CATALOGUE_MANAGER,
    "builds:retry_zone": roles.CATALOGUE_MANAGER,
    "builds:test_rerun": roles.CATALOGUE_MANAGER,
    "builds:test_cancel": roles.CATALOGUE_MANAGER,
    "builds:janitor_run": roles.ADMINISTRATOR,
    "catalog:step_add": roles.CATALOGUE_MANAGER,
    "catalog:step_save": roles.CATALOGUE_MANAGER,
    "catalog:step_delete": roles.CATALOGUE_MANAGER,
    "catalog:step_move": roles.CATALOGUE_MANAGER,
    "catalog:set_date": roles.CATALOGUE_MANAGER,
    "catalog:set_storage_types": roles.CATALOGUE_MANAGER,
    "catalog:import_eol": roles.CATALOGUE_MANAGER,
    "eol_proposal": roles.CATALOGUE_MANAGER,
    "catalog:zone_toggle": roles.ADMINISTRATOR,
    "lifecycle:release": roles.RELEASE_MANAGER,
    "lifecycle:withdraw": roles.RELEASE_MANAGER,
    "lifecycle:bulk_rebuild": roles.CATALOGUE_MANAGER,
    "lifecycle:deprecation_set": roles.RELEASE_MANAGER,
    "lifecycle:customers_import": roles.RELEASE_MANAGER,
    "lifecycle:notice_decide": roles.RELEASE_MANAGER,
    "lifecycle:notice_send_test": roles.RELEASE_MANAGER,
    "lifecycle:request_status": roles.CATALOGUE_MANAGER,
    "lifecycle:parity_check": roles.CATALOGUE_MANAGER,
    "lifecycle:parity_fix": roles.CATALOGUE_MANAGER,
    "lifecycle:adoption_run": roles.ADMINISTRATOR,
    "lifecycle:adoption_label": roles.CATALOGUE_MANAGER,
}
SAMPLE = {"int": "1", "slug": "x", "str": "x", "path": "x"}
PARAMETER = re.compile(r"<(?:(\w+):)?\w+>")


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                yield "admin:index", "/admin/"
                continue
            inner = ":".join(n for n in (namespace, entry.namespace or "") if n)
            yield from _walk(entry, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            url = "/" + PARAMETER.sub(lambda m: SAMPLE.get(m.group(1) or "str", "x"), route)
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield name or route, url


ENDPOINTS = sorted(set(_walk(get_resolver())))


def _is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(("name", "url"), ENDPOINTS, ids=[n for n, _ in ENDPOINTS])
def test_without_a_session_every_url_is_protected_or_public_with_a_reason(
    name: str, url: str
) -> None:
    client = Client()
    answers = [client.get(url), client.post(url)]
    if name in PUBLIC:
        for response in answers:
            assert not _is_login_redirect(response), f"{name} is public: {PUBLIC[name]}"
        return
    own = (401, 405) if name in SELF_AUTHENTICATING else ()
    for response in answers:
        refused = _is_login_redirect(response) or response.status_code in own
        assert refused, f"{name} ({url}) answered {response.status_code} without a session"


def _member(role: str | None, username: str) -> User:
    user = User.objects.create_user(username=username)  # no password: no hashing to wait for
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def _post(user: User, url: str) -> int:
    client = Client()
    client.force_login(user)
    return client.post(url).status_code


@pytest.mark.parametrize(("name", "url"), ENDPOINTS, ids=[n for n, _ in ENDPOINTS])
def test_every_post_endpoint_refuses_the_roles_under_the_one_it_needs(name: str, url: str) -> None:
    if name == "admin:index":
        pytest.skip("the admin checks its own permissions")
    superuser = User.objects.create_superuser(username="root", email="", password=None)
    if _post(superuser, url) == 405:
        assert name not in NEEDS, f"{name} takes no POST: drop it from NEEDS"
        return
    if name in ROLE_FREE_POSTS:
        return
    assert name in NEEDS, (
        f"{name} ({url}) accepts POST but has no entry in NEEDS: give it a permission check "
        "and name the lowest role that may use it"
    )
    assert _post(_member(None, "nobody"), url) == 403, f"{name}: a user with no role got past"
    needed = RANKS.index(NEEDS[name])
    for rank, role in enumerate(RANKS):
        status = _post(_member(role, f"user-{rank}"), url)
        if rank < needed:
            assert status == 403, f"{name}: a {role} got {status}, needs {NEEDS[name]}"
        else:
            assert status != 403, f"{name}: a {role} was refused, {NEEDS[name]} should do"
