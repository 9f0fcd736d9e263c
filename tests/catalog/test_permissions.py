"""Each role can do exactly what it should; the server checks, whatever the page shows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from builds.choices import BuildState
from builds.models import Build
from catalog.models import AuditEntry, RecipeStep, Zone
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def image():
    image = os_image("debian_bookworm", eol=dt.date(2026, 7, 11))
    RecipeStep.objects.create(image=image, position=1, type="update_packages", params={})
    RecipeStep.objects.create(
        image=image, position=2, type="install_packages", params={"packages": ["curl"]}
    )
    return image


@pytest.fixture
def zone():
    return Zone.objects.create(code="fr-par-1", enabled=True)


def _actions(image, zone) -> dict[str, tuple[str, dict]]:
    step = image.steps.first()
    failed = Build.objects.create(image=image, state=BuildState.FAILED)
    return {
        "add a step": (
            reverse("catalog:step_add", args=[image.label]),
            {"type": "install_packages", "p_packages": "vim", "enabled": "on"},
        ),
        "change a step": (
            reverse("catalog:step_save", args=[image.label, step.pk]),
            {"type": "install_packages", "p_packages": "htop", "enabled": "on"},
        ),
        "move a step": (
            reverse("catalog:step_move", args=[image.label, step.pk]),
            {"direction": "down"},
        ),
        "remove a step": (reverse("catalog:step_delete", args=[image.label, step.pk]), {}),
        "set a date": (
            reverse("catalog:set_date", args=[image.label]),
            {"field": "security_support_end", "value": "2026-08-01", "reason": "announced"},
        ),
        "set storage types": (
            reverse("catalog:set_storage_types", args=[image.label]),
            {"storage_types": ["instance_sbs"]},
        ),
        "import EOL dates": (reverse("catalog:import_eol"), {}),
        "rebuild": (reverse("builds:rebuild", args=[image.label]), {}),
        "retry a build": (reverse("builds:retry", args=[failed.pk]), {}),
        "toggle a zone": (reverse("catalog:zone_toggle", args=[zone.code]), {}),
    }


MANAGER_ACTIONS = {
    "add a step",
    "change a step",
    "move a step",
    "remove a step",
    "set a date",
    "set storage types",
    "import EOL dates",
    "rebuild",
    "retry a build",
}
EXPECTED = {
    "viewer": set(),
    "manager": MANAGER_ACTIONS,
    "release_manager": MANAGER_ACTIONS,
    "admin_user": MANAGER_ACTIONS | {"toggle a zone"},
}


@pytest.mark.parametrize("role", list(EXPECTED))
def test_each_role_can_do_exactly_its_actions(request, client, image, zone, role) -> None:
    user = request.getfixturevalue(role)
    client.force_login(user)
    allowed = set()
    for name, (url, data) in _actions(image, zone).items():
        response = client.post(url, data)
        assert response.status_code in (200, 302, 403), (name, response.status_code)
        if response.status_code != 403:
            allowed.add(name)
    assert allowed == EXPECTED[role]


def test_a_viewer_changes_nothing(client, viewer, image, zone) -> None:
    client.force_login(viewer)
    before_steps = list(image.steps.values_list("type", "params", "position"))
    for url, data in _actions(image, zone).values():
        assert client.post(url, data).status_code == 403
    assert list(image.steps.values_list("type", "params", "position")) == before_steps
    assert Zone.objects.get(code="fr-par-1").enabled
    assert not AuditEntry.objects.exists()
    assert Build.objects.filter(state=BuildState.QUEUED).count() == 0


def test_state_changes_refuse_get(client, admin_user, image, zone) -> None:
    client.force_login(admin_user)
    for url, _data in _actions(image, zone).values():
        assert client.get(url).status_code == 405


def test_every_page_requires_a_login(client, image) -> None:
    for url in ["/", image.get_absolute_url(), "/builds/", "/zones/", "/audit/", "/admin/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert "/login/" in response["Location"]


def test_an_htmx_request_without_a_session_is_sent_to_the_login_page(client) -> None:
    response = client.get("/", HTTP_HX_REQUEST="true")
    assert response.status_code == 401
    assert response["HX-Redirect"] == "/accounts/login/"


def test_csrf_is_enforced(image) -> None:
    from django.test import Client

    from catalog.roles import CATALOGUE_MANAGER

    strict = Client(enforce_csrf_checks=True)
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("csrf", password="x")
    user.groups.add(Group.objects.get(name=CATALOGUE_MANAGER))
    strict.force_login(user)
    response = strict.post(
        reverse("catalog:step_add", args=[image.label]), {"type": "update_packages"}
    )
    assert response.status_code == 403
