"""`manage.py scaleway_smoke` on real VMs (localcloud's QEMU backend): the fixture image
published with both storage types, a DEV1-S booted from the local image and a Block Storage
type from the SBS one, Network and Reboot passing on both, and nothing left. In the extra
tier: the twelve checks of the VM tier already boot both storage types."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from catalog.models import Image
from tests.builds.testing.vmcloud import (
    VmCloudProcess,
    configure,
    image_file,
    new_resources,
    resource_ids,
)

pytestmark = [pytest.mark.vm, pytest.mark.extra, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def vm(settings, monkeypatch: pytest.MonkeyPatch) -> VmCloudProcess:
    return configure(settings, monkeypatch)


def test_the_smoke_test_passes_on_real_vms_and_leaves_nothing(vm: VmCloudProcess) -> None:
    before = resource_ids(vm)
    out = StringIO()
    call_command(
        "scaleway_smoke", "--zone", "fr-par-1", "--image", str(image_file("ready")), stdout=out
    )
    output = out.getvalue()
    assert "Smoke test in fr-par-1: passed" in output
    assert "Local storage: image " in output and "network passed, reboot passed" in output
    assert "Block Storage: image " in output
    assert "everything it made is deleted" in output
    assert new_resources(before, resource_ids(vm)) == {}
    assert not Image.objects.filter(label="factory_smoke").exists()
