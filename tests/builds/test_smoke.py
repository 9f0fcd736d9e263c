"""`manage.py scaleway_smoke` against localcloud on the timer backend (no VM: the servers
never answer SSH, so the checks fail, and the point is the flow): both storage types
published, one server of each type booted and timed, a summary with prices from the zone's
product list, and nothing left behind, in the cloud or in the catalogue. A run on real VMs is
in the extra tier (tests/builds/test_smoke_vm.py)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from builds.models import Build, TestRun
from catalog.models import Category, Image, ImageVersion, Zone
from cloud import clients
from tests.cloud.localcloud import Cloud

pytestmark = pytest.mark.django_db(transaction=True)


def _smoke(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("scaleway_smoke", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_the_smoke_test_publishes_both_storage_types_boots_one_server_each_and_cleans_up(
    cloud: Cloud, qcow2_artefact: Path, settings
) -> None:
    settings.TEST_BOOT_TIMEOUT_SECONDS = 2
    settings.TEST_ACTION_TIMEOUT_SECONDS = 30
    prices = {
        name: kind.hourly_price
        for name, kind in clients.instance_api().list_servers_types(zone="fr-par-1").servers.items()
    }
    output, error = _smoke("--zone", "fr-par-1", "--image", str(qcow2_artefact))

    # The timer backend's servers never answer SSH: the checks fail, and the command says so.
    assert error is not None and "failed" in str(error)
    assert "Smoke test in fr-par-1: FAILED" in output
    assert "Local storage: image " in output and "Block Storage: image " in output
    assert "network failed" in output
    assert f"server {settings.TEST_COMMERCIAL_TYPE_LOCAL}: " in output
    assert f"server {settings.TEST_COMMERCIAL_TYPE_BLOCK}: " in output
    assert f"{prices[settings.TEST_COMMERCIAL_TYPE_BLOCK]:.4f} EUR/h" in output
    assert "cost: " in output and "EUR" in output
    assert "everything it made is deleted" in output
    # Nothing left: no tagged resource in the cloud, no object, no catalogue row.
    assert cloud.factory_resources() == []
    assert cloud.objects("fr-par") == []
    assert not Image.objects.filter(label="factory_smoke").exists()
    assert not (ImageVersion.objects.exists() or Build.objects.exists() or TestRun.objects.exists())
    assert not Category.objects.exists() and not Zone.objects.exists()


def test_without_credentials_or_an_image_it_says_what_is_missing(
    cloud: Cloud, qcow2_artefact: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, error = _smoke("--image", str(tmp_path / "missing.qcow2"))
    assert error is not None and "is not a file" in str(error)
    monkeypatch.delenv("SCW_SECRET_KEY")
    _, error = _smoke("--image", str(qcow2_artefact))
    assert error is not None and "SCW_SECRET_KEY" in str(error)
    assert not Image.objects.exists()
