"""An image's storage types: shown and changed on the image page (checkboxes, at least one,
checked on the server, audited), the version page's local images by zone and storage type,
and the demo loader's default."""

from __future__ import annotations

import copy

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from catalog import demo
from catalog.choices import LocalImageState, StorageType
from catalog.forms import StorageTypesForm
from catalog.models import AuditEntry, Image, ImageVersion, LocalImage, Zone
from tests.catalog.factories import os_image

pytestmark = pytest.mark.django_db

LOCAL, SBS = StorageType.LOCAL.value, StorageType.SBS.value


def set_types(client, image, *values: str):
    url = reverse("catalog:set_storage_types", args=[image.label])
    return client.post(url, {"storage_types": list(values)}, follow=True)


def test_a_new_image_is_published_with_both_storage_types() -> None:
    assert os_image("debian_bookworm").storage_types == [LOCAL, SBS]


def test_a_manager_sees_both_storage_types_as_labelled_checkboxes(client, manager) -> None:
    image = os_image("debian_bookworm")
    client.force_login(manager)
    page = client.get(image.get_absolute_url()).content.decode()
    shown = page.split('data-testid="storage-types">')[1].split("</dd>")[0]
    assert shown == "Local storage, Block Storage"
    form = page.split('data-testid="storage-types-form"')[1].split("</form>")[0]
    assert form.count('type="checkbox"') == 2 and form.count("checked") == 2
    assert f'value="{LOCAL}"' in form and f'value="{SBS}"' in form
    assert "Local storage (instance_local)" in form and "Block Storage (instance_sbs)" in form


def test_a_viewer_sees_the_storage_types_but_no_form_and_cannot_post(client, viewer) -> None:
    image = os_image("debian_bookworm")
    client.force_login(viewer)
    page = client.get(image.get_absolute_url()).content.decode()
    assert 'data-testid="storage-types"' in page and "storage-types-form" not in page
    response = client.post(
        reverse("catalog:set_storage_types", args=[image.label]), {"storage_types": [SBS]}
    )
    assert response.status_code == 403
    image.refresh_from_db()
    assert image.storage_types == [LOCAL, SBS]


def test_a_manager_changes_the_storage_types_and_the_change_is_audited(client, manager) -> None:
    image = os_image("debian_bookworm")
    client.force_login(manager)
    response = set_types(client, image, SBS)
    assert "Storage types saved (Block Storage)" in response.content.decode()
    image.refresh_from_db()
    assert image.storage_types == [SBS]
    entry = AuditEntry.objects.get(action="image.storage_types_set")
    assert entry.actor == manager and entry.image == image
    assert entry.before == {"storage_types": [LOCAL, SBS]}
    assert entry.after == {"storage_types": [SBS]}

    # Back to both, in whatever order the browser sends them: stored in the catalogue's order.
    set_types(client, image, SBS, LOCAL)
    image.refresh_from_db()
    assert image.storage_types == [LOCAL, SBS]
    # The same choice again changes nothing and records nothing.
    again = set_types(client, image, LOCAL, SBS)
    assert "unchanged" in again.content.decode()
    assert AuditEntry.objects.filter(action="image.storage_types_set").count() == 2


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ((), "Choose at least one storage type."),
        (("instance_nvme",), "Select a valid choice"),
        ((LOCAL, "b_ssd"), "Select a valid choice"),
    ],
)
def test_a_bad_choice_is_refused_and_changes_nothing(client, manager, values, error) -> None:
    image = os_image("debian_bookworm")
    client.force_login(manager)
    page = set_types(client, image, *values).content.decode()
    assert "The storage types were not changed" in page and error in page
    image.refresh_from_db()
    assert image.storage_types == [LOCAL, SBS]
    assert not AuditEntry.objects.filter(action="image.storage_types_set").exists()


def test_the_form_and_the_model_agree_on_what_is_valid() -> None:
    assert StorageTypesForm({"storage_types": [SBS, LOCAL]}).is_valid()
    assert not StorageTypesForm({"storage_types": []}).is_valid()
    image = os_image("debian_bookworm")
    for bad in ([], ["instance_nvme"], "instance_local"):
        image.storage_types = bad
        with pytest.raises(ValidationError):
            image.full_clean()


def test_the_version_page_lists_local_images_by_zone_then_storage_type(client, viewer) -> None:
    image = os_image("debian_bookworm")
    version = ImageVersion.objects.create(image=image, name="2026-11-01")
    zones = [Zone.objects.create(code=code, enabled=True) for code in ("fr-par-2", "fr-par-1")]
    for zone in zones:
        for storage_type in (SBS, LOCAL):
            LocalImage.objects.create(
                version=version,
                zone=zone,
                storage_type=storage_type,
                provider_image_id=f"{zone.code}-{storage_type}",
                state=LocalImageState.AVAILABLE,
            )
    client.force_login(viewer)
    page = client.get(version.get_absolute_url()).content.decode()
    assert "<th>Storage</th>" in page
    rows = page.split('data-testid="local-image"')[1:]
    ids = [f"{z}-{t}" for z in ("fr-par-1", "fr-par-2") for t in (LOCAL, SBS)]
    assert [next(i for i in ids if i in row) for row in rows] == ids
    assert "Local storage" in rows[0] and "Block Storage" in rows[1]


def test_the_demo_gives_new_images_both_types_and_keeps_a_managers_choice(monkeypatch) -> None:
    images = copy.deepcopy(demo.OS_IMAGES)
    images[0]["storage_types"] = [SBS]
    monkeypatch.setattr(demo, "OS_IMAGES", images)
    demo.load_demo(demo_upstream_url="http://127.0.0.1:8081/debian-12/")
    named = Image.objects.get(label=images[0]["label"])
    assert named.storage_types == [SBS]
    other = Image.objects.get(label=images[1]["label"])
    assert other.storage_types == [LOCAL, SBS]
    assert all(i.storage_types for i in Image.objects.all())

    Image.objects.filter(pk=other.pk).update(storage_types=[LOCAL])
    demo.load_demo(demo_upstream_url="http://127.0.0.1:8081/debian-12/")
    other.refresh_from_db()
    assert other.storage_types == [LOCAL]


def test_the_demo_refuses_an_unknown_storage_type(monkeypatch) -> None:
    images = copy.deepcopy(demo.OS_IMAGES)
    images[0]["storage_types"] = ["instance_nvme"]
    monkeypatch.setattr(demo, "OS_IMAGES", images)
    with pytest.raises(ValidationError, match="Unknown storage type"):
        demo.load_demo(demo_upstream_url="http://127.0.0.1:8081/debian-12/")
    assert not Image.objects.exists()
