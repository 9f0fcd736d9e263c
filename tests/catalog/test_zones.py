"""Enabling a zone is a bulk action: it publishes, then tests, every current version there, so
it goes through a confirmation page listing them (like admin's delete_selected) and happens
only once confirmed; disabling deletes nothing and stays one click. Only a zone manager may
do either, checked on the server at each step."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ

from builds.models import Build
from catalog.choices import Arch, ImageState, VersionState
from catalog.models import AuditEntry, Image, ImageVersion, Zone
from lifecycle import zones
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db

NEW_ZONE = "fr-par-2"
ENABLE = {"action": "enable"}
CONFIRM = {"action": "enable", "confirm": "yes"}


@pytest.fixture(autouse=True)
def zone_rows() -> None:
    Zone.objects.create(code="fr-par-1", enabled=True)
    Zone.objects.create(code=NEW_ZONE, enabled=False)


def released(
    image: Image, name: str, *, arch: str = Arch.X86_64, days_ago: int = 0, artefact: bool = True
) -> ImageVersion:
    """A released version with its build (rows only: nothing is published here)."""
    version = ImageVersion.objects.create(
        image=image,
        arch=arch,
        name=name,
        state=VersionState.RELEASED,
        released_at=timezone.now() - dt.timedelta(days=days_ago),
        artefact_path=f"/var/artefacts/{image.label}-{name}-{arch}.qcow2" if artefact else "",
    )
    Build.objects.create(image=image, arch=arch, state="done", version=version)
    return version


@pytest.fixture
def catalogue() -> dict[str, ImageVersion]:
    debian = os_image("debian_bookworm", arches=(Arch.X86_64, Arch.ARM64))
    released(debian, "2026-08-01", days_ago=30)  # an earlier release: not current
    current = released(debian, "2026-11-01")
    current_arm = released(debian, "2026-11-01", arch=Arch.ARM64)
    ImageVersion.objects.create(image=debian, name="2026-12-01", state=VersionState.PUBLISHED)
    gone = released(os_image("ubuntu_noble"), "2026-10-01", artefact=False)
    old = os_image("centos_7")
    released(old, "2024-06-30")
    Image.objects.filter(pk=old.pk).update(state=ImageState.DEPRECATED)
    return {"current": current, "current_arm": current_arm, "gone": gone}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _toggle(user, code: str = NEW_ZONE, **data: str):
    return _client(user).post(reverse("catalog:zone_toggle", args=[code]), data)


def _nothing_happened() -> None:
    assert not Zone.objects.get(code=NEW_ZONE).enabled
    assert not OrmQ.objects.exists()
    assert not AuditEntry.objects.exists()


def test_enable_first_shows_the_current_versions_it_will_publish_and_changes_nothing(
    admin_user, catalogue, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _toggle(admin_user, **ENABLE)

    assert response.status_code == 200
    assert response.templates[0].name == "catalog/zone_confirm.html"
    listed = response.context["versions"]
    assert listed == [catalogue["current_arm"], catalogue["current"], catalogue["gone"]]
    page = response.content.decode()
    assert "Enable zone fr-par-2?" in page
    assert "2 versions will be published, then tested, in fr-par-2" in page
    for label, arch, name in [
        ("debian_bookworm", "x86_64", "2026-11-01"),
        ("debian_bookworm", "arm64", "2026-11-01"),
        ("ubuntu_noble", "x86_64", "2026-10-01"),
    ]:
        assert re.search(rf"{label}</span></td>\s*<td>{arch}</td>\s*<td[^>]*><a[^>]*>{name}", page)
    assert "artefact gone: skipped" in page
    for hidden in ("2026-08-01", "2026-12-01", "centos_7"):
        assert hidden not in page
    assert 'name="confirm" value="yes"' in page
    assert f'href="{reverse("catalog:zones")}"' in page  # No, take me back
    assert callbacks == []
    _nothing_happened()


def test_confirming_enables_the_zone_and_queues_the_publishes(
    admin_user, catalogue, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = _toggle(admin_user, **CONFIRM)

    assert response.status_code == 302 and response.url == reverse("catalog:zones")
    assert Zone.objects.get(code=NEW_ZONE).enabled
    queued = sorted(tuple(q.task["args"]) for q in OrmQ.objects.all())
    current, arm = catalogue["current"], catalogue["current_arm"]
    assert queued == sorted(
        [(current.build.pk, current.pk, NEW_ZONE), (arm.build.pk, arm.pk, NEW_ZONE)]
    )
    assert {q.task["func"] for q in OrmQ.objects.all()} == {zones.PUBLISH_TASK}
    entry = AuditEntry.objects.get(action="zone.enabled")
    assert entry.actor == admin_user and entry.target_repr == NEW_ZONE
    assert (entry.before, entry.after) == ({"enabled": False}, {"enabled": True})
    assert AuditEntry.objects.filter(action=zones.QUEUED_ACTION).count() == 2
    skipped = AuditEntry.objects.get(action=zones.SKIPPED_ACTION)
    assert skipped.target_id == str(catalogue["gone"].pk)


def test_a_double_submitted_confirmation_enables_once_and_never_disables(
    admin_user, catalogue, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        _toggle(admin_user, **CONFIRM)
        response = _toggle(admin_user, **CONFIRM)
    assert response.status_code == 302
    assert Zone.objects.get(code=NEW_ZONE).enabled
    assert AuditEntry.objects.filter(action__in=["zone.enabled", "zone.disabled"]).count() == 1
    assert OrmQ.objects.count() == 2


def test_a_zone_with_no_current_version_still_asks_and_says_so(admin_user) -> None:
    response = _toggle(admin_user, **ENABLE)
    assert response.status_code == 200
    assert response.context["versions"] == []
    assert "nothing will be published or tested in fr-par-2" in response.content.decode()
    _nothing_happened()


def test_disabling_stays_one_click_and_queues_nothing(
    admin_user, catalogue, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = _toggle(admin_user, "fr-par-1", action="disable")
    assert response.status_code == 302
    assert not Zone.objects.get(code="fr-par-1").enabled
    assert not OrmQ.objects.exists()
    entry = AuditEntry.objects.get()
    assert entry.action == "zone.disabled" and entry.actor == admin_user


def test_disabling_from_the_zones_page_swaps_the_row(admin_user) -> None:
    response = _client(admin_user).post(
        reverse("catalog:zone_toggle", args=["fr-par-1"]),
        {"action": "disable"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    row = response.content.decode()
    assert row.strip().startswith('<tr id="zone-fr-par-1">') and "Enable" in row
    assert not Zone.objects.get(code="fr-par-1").enabled


def test_the_zones_page_asks_to_confirm_enabling_and_disables_in_place(admin_user) -> None:
    page = _client(admin_user).get(reverse("catalog:zones")).content.decode()
    url = reverse("catalog:zone_toggle", args=[NEW_ZONE])
    enable_form = re.search(rf'<form[^>]*action="{url}"[^>]*>', page).group(0)
    assert "hx-post" not in enable_form  # a full page: the confirmation
    assert 'name="action" value="enable"' in page and 'name="action" value="disable"' in page
    assert f'hx-post="{reverse("catalog:zone_toggle", args=["fr-par-1"])}"' in page


@pytest.mark.parametrize("role", ["viewer", "manager", "release_manager"])
def test_only_a_zone_manager_may_ask_or_confirm(request, role, catalogue) -> None:
    user = request.getfixturevalue(role)
    assert _toggle(user, **ENABLE).status_code == 403
    assert _toggle(user, **CONFIRM).status_code == 403
    assert _toggle(user, "fr-par-1", action="disable").status_code == 403
    _nothing_happened()
    assert Zone.objects.get(code="fr-par-1").enabled


def test_a_viewer_sees_no_toggle(viewer) -> None:
    page = _client(viewer).get(reverse("catalog:zones")).content.decode()
    assert "zone_toggle" not in page and "/toggle/" not in page


def test_an_unknown_zone_is_404_at_both_steps(admin_user) -> None:
    assert _toggle(admin_user, "xx-nop-9", **ENABLE).status_code == 404
    assert _toggle(admin_user, "xx-nop-9", **CONFIRM).status_code == 404
    _nothing_happened()


def test_the_toggle_answers_post_only(admin_user) -> None:
    url = reverse("catalog:zone_toggle", args=[NEW_ZONE])
    assert _client(admin_user).get(url, CONFIRM).status_code == 405
    _nothing_happened()


def test_both_steps_need_the_csrf_token(admin_user, catalogue) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    url = reverse("catalog:zone_toggle", args=[NEW_ZONE])
    assert client.post(url, ENABLE).status_code == 403
    assert client.post(url, CONFIRM).status_code == 403
    _nothing_happened()

    page = client.get(reverse("catalog:zones")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    confirm_page = client.post(url, {**ENABLE, "csrfmiddlewaretoken": token})
    assert confirm_page.status_code == 200
    token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', confirm_page.content.decode()
    ).group(1)
    assert client.post(url, {**CONFIRM, "csrfmiddlewaretoken": token}).status_code == 302
    assert Zone.objects.get(code=NEW_ZONE).enabled


def test_the_confirmation_page_queries_do_not_grow_with_the_catalogue(
    admin_user, django_assert_max_num_queries
) -> None:
    client = _client(admin_user)
    url = reverse("catalog:zone_toggle", args=[NEW_ZONE])
    released(os_image("debian_bookworm"), "2026-11-01")
    with django_assert_max_num_queries(10) as few:
        client.post(url, ENABLE)
    for n in range(5):
        image = os_image(f"image_{n}", arches=(Arch.X86_64, Arch.ARM64))
        released(image, "2026-10-01", days_ago=3)
        released(image, "2026-11-01")
        released(image, "2026-11-01", arch=Arch.ARM64)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.post(url, ENABLE)
    assert len(response.context["versions"]) == 11
