"""The janitor against a real localcloud: what it keeps, what it deletes, dry runs, the age
threshold, and its page and "Run janitor now" button."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from scaleway.block.v1 import CreateVolumeRequestFromEmpty

from builds.janitor import janitor_task, run_janitor
from builds.models import Build, JanitorRun
from builds.publish import discard
from catalog.choices import LocalImageState, StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients, waiters
from tests.builds.factories import publish_for_real
from tests.catalog.factories import os_image
from tests.cloud.localcloud import ZONES, Cloud


def _publish(image_label: str, state: str, artefact: Path) -> ImageVersion:
    image = os_image(image_label)
    # Local storage only (Block Storage images have their own tests, test_janitor_block).
    image.storage_types = [StorageType.LOCAL]
    image.save(update_fields=["storage_types"])
    version = ImageVersion.objects.create(
        image=image, arch="x86_64", name="2026-11-26", artefact_path=str(artefact)
    )
    build = publish_for_real(version, artefact)
    Build.objects.filter(pk=build.pk).update(state=state)
    return version


@pytest.fixture
def zones(db) -> None:
    for code in ZONES:
        Zone.objects.create(code=code, enabled=True)


def test_janitor_deletes_orphans_and_keeps_what_is_published(
    cloud: Cloud, zones: None, qcow2_artefact: Path
) -> None:
    kept = _publish("debian_bookworm", "done", qcow2_artefact)
    failed = _publish("ubuntu_noble", "failed", qcow2_artefact)
    kept_build, failed_build = kept.build.pk, failed.build.pk
    api = clients.instance_api()
    # A duplicate image of the done build, which no LocalImage references.
    local = LocalImage.objects.get(version=kept, zone__code="fr-par-2")
    duplicate = api.create_image(
        zone="fr-par-2",
        root_volume=local.snapshot_id,
        arch="x86_64",
        name="duplicate",
        tags=["image-factory", f"build:{kept_build}"],
    ).image
    # Test servers of the failed build: one stopped, one running.
    failed_image = LocalImage.objects.get(version=failed, zone__code="fr-par-1")
    servers = [
        api.create_server(
            zone="fr-par-1",
            commercial_type="DEV1-S",
            image=failed_image.provider_image_id,
            name=name,
            tags=["image-factory", f"build:{failed_build}"],
            dynamic_ip_required=False,
        ).server
        for name in ("test-stopped", "test-running")
    ]
    api.server_action(zone="fr-par-1", server_id=servers[1].id, action="poweron")
    waiters.wait_for_server(api, "fr-par-1", servers[1].id, until=("running",), timeout=10)
    # A Block Storage volume of a build that no longer exists.
    volume = clients.block_api().create_volume(
        zone="nl-ams-1",
        name="left-behind",
        from_empty=CreateVolumeRequestFromEmpty(size=5_000_000_000),
        tags=["image-factory", "build:999"],
    )

    # A dry run only reports.
    before = cloud.factory_resources()
    dry = run_janitor(older_than=dt.timedelta(0), dry_run=True)
    assert cloud.factory_resources() == before
    assert dry.removed == [] and dry.errors == []
    actions = {f["id"]: f["action"] for f in dry.findings}
    assert actions[duplicate.id] == "would delete"
    assert actions[volume.id] == "would delete"
    assert actions[local.provider_image_id] == "kept"

    # Too young to be touched.
    young = run_janitor(older_than=dt.timedelta(hours=1), dry_run=False)
    assert young.removed == []
    assert {f["action"] for f in young.findings if f["orphan"]} == {"too recent"}

    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)
    assert run.errors == []
    removed = {(r["kind"], r["id"]) for r in run.removed}
    assert ("image", duplicate.id) in removed
    assert ("block_volume", volume.id) in removed
    assert {("server", server.id) for server in servers} <= removed
    assert cloud.inventory().get("instance_server", []) == []
    assert cloud.inventory().get("instance_volume", []) == []  # their local volumes too
    for li in LocalImage.objects.filter(version=failed):
        assert ("image", li.provider_image_id) in removed
        assert ("snapshot", li.snapshot_id) in removed
        assert li.state == LocalImageState.DELETED
    # Uploads of both builds are gone (the done build's imports are finished).
    assert cloud.objects("fr-par") == []
    # What remains is exactly the done build's published images and their snapshots.
    published = LocalImage.objects.filter(version=kept)
    expected = {li.provider_image_id for li in published} | {li.snapshot_id for li in published}
    assert {rid for _kind, rid in cloud.factory_resources()} == expected
    assert all(li.state == LocalImageState.AVAILABLE for li in published)
    reasons = {f["id"]: f["reason"] for f in run.findings}
    assert reasons[volume.id] == "build #999 no longer exists"
    assert f"build #{failed_build} failed" in {f["reason"] for f in run.findings}

    # Discarding the done build leaves localcloud free of factory resources.
    discard(kept_build)
    assert cloud.factory_resources() == []
    assert run_janitor(older_than=dt.timedelta(0), dry_run=False).findings == []


def test_janitor_task_uses_the_settings(cloud: Cloud, zones: None, settings) -> None:
    settings.JANITOR_OLDER_THAN_HOURS = 48
    settings.JANITOR_DRY_RUN = True
    summary = janitor_task()
    run = JanitorRun.objects.get()
    assert run.dry_run and run.finished_at is not None
    assert summary.startswith(f"janitor run {run.pk}:")


def test_janitor_records_a_misconfigured_cloud(zones: None, monkeypatch) -> None:
    monkeypatch.delenv("SCW_ACCESS_KEY", raising=False)
    monkeypatch.delenv("SCW_SECRET_KEY", raising=False)
    monkeypatch.setenv("SCW_CONFIG_PATH", "/nonexistent/config.yaml")
    run = run_janitor(older_than=dt.timedelta(0), dry_run=False)
    assert run.findings == []
    assert run.errors and "SCW_ACCESS_KEY" in run.errors[0]


def test_page_lists_runs_for_any_user(client, viewer) -> None:
    JanitorRun.objects.create(
        findings=[
            {
                "kind": "image",
                "where": "fr-par-1",
                "id": "abc",
                "name": "x",
                "build": None,
                "created": "",
                "orphan": True,
                "reason": "tagged by the factory but with no build tag",
                "action": "deleted",
                "state": "available",
            }
        ],
        removed=[{"kind": "image", "where": "fr-par-1", "id": "abc"}],
    )
    client.force_login(viewer)
    page = client.get("/builds/janitor/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "tagged by the factory but with no build tag" in text
    assert "Run janitor now" not in text  # viewers cannot run it


def test_run_now_needs_the_permission(
    client, viewer, admin_user, django_capture_on_commit_callbacks
) -> None:
    from django_q.models import OrmQ

    client.force_login(viewer)
    assert client.post("/builds/janitor/run/").status_code == 403
    assert client.get("/builds/janitor/run/").status_code == 405
    client.force_login(admin_user)
    assert "Run janitor now" in client.get("/builds/janitor/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/builds/janitor/run/", {"older_than_hours": "12", "dry_run": "on"})
    assert answer.status_code == 302
    [queued] = [q.task for q in OrmQ.objects.all()]
    assert queued["func"] == "builds.janitor.janitor_task_for"
    assert queued["args"] == (admin_user.pk, 12.0, True)
