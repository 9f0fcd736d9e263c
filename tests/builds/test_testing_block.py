"""Test runs on Block Storage against localcloud's timer backend (servers change state but boot
nothing, so no VM and no SSH): the version published by builds.publish with both storage
types gets one run per storage type; a Block run boots servers of TEST_COMMERCIAL_TYPE_BLOCK
whose roots are Block volumes; the snapshot and backup checks make Block snapshots, the copy
boots from a Block snapshot, Archive's Block assertions hold on a stopped server; and the
ledger deletes every Block resource the run made. What is asserted is read back through
localcloud's Block and Instance APIs with the real SDK."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from scaleway_core.api import ScalewayException

from builds.choices import CheckState
from builds.choices import TestRunState as RunState
from builds.models import CheckResult, TestRun
from builds.testing import orchestration, registry
from builds.testing.checks import archive, backup
from builds.testing.harness import RUNNING, STOPPED, Harness, RunSpec
from builds.testing.outcomes import CheckFailed
from builds.testing.reporting import Reporter
from builds.testing.runner import commercial_type_for, run_test_run
from builds.testing.source import snapshot_root
from catalog.choices import StorageType
from catalog.models import ImageVersion, LocalImage, Zone
from cloud import clients, tags
from tests.builds.testing.published import timer_run_version
from tests.cloud.localcloud import Cloud

pytestmark = pytest.mark.django_db(transaction=True)

ZONE = "fr-par-1"
BLOCK_TYPE = "PLAY2-PICO"


@pytest.fixture
def version(cloud: Cloud, qcow2_artefact: Path, settings) -> ImageVersion:
    settings.TEST_COMMERCIAL_TYPE_BLOCK = BLOCK_TYPE
    return timer_run_version(settings, qcow2_artefact, ZONE, TEST_CHECK_CONCURRENCY=3)


def tagged_block(tag: str) -> tuple[list[Any], list[Any]]:
    """The Block volumes and snapshots carrying `tag` in the zone."""
    block = clients.block_api()
    volumes = block.list_volumes_all(zone=ZONE, include_deleted=False)
    snapshots = block.list_snapshots_all(zone=ZONE, include_deleted=False)
    return (
        [v for v in volumes if tag in (v.tags or [])],
        [s for s in snapshots if tag in (s.tags or [])],
    )


def counts(cloud: Cloud) -> dict[str, int]:
    return cloud.counts(
        "instance_server",
        "instance_volume",
        "instance_snapshot",
        "instance_image",
        "block_volume",
        "block_snapshot",
    )


def test_the_commercial_type_follows_the_storage_type(settings) -> None:
    settings.TEST_COMMERCIAL_TYPE_LOCAL = "DEV1-M"
    settings.TEST_COMMERCIAL_TYPE_BLOCK = "PRO2-XXS"
    assert commercial_type_for(StorageType.LOCAL) == "DEV1-M"
    assert commercial_type_for(StorageType.SBS) == "PRO2-XXS"


def test_one_run_per_storage_type_and_a_block_run_leaves_nothing_behind(
    cloud: Cloud, version: ImageVersion
) -> None:
    images = {li.storage_type: li for li in LocalImage.objects.filter(version=version)}
    assert set(images) == {StorageType.LOCAL, StorageType.SBS}
    runs = orchestration.create_runs(version, [Zone.objects.get(code=ZONE)])
    assert [r.storage_type for r in runs] == [StorageType.LOCAL, StorageType.SBS]
    block_run = runs[1]
    before = counts(cloud)

    assert run_test_run(block_run.pk, "worker-1") == RunState.FINISHED

    block_run.refresh_from_db()
    results = {r.check_name: r for r in CheckResult.objects.filter(test_run=block_run)}
    assert list(results) == registry.names()
    for name, result in results.items():
        # The timer backend's servers never answer SSH: every check fails, saying so.
        assert result.state == CheckState.FAILED, (name, result.reason)
        # (A copying check's log may start with the source server, made by another check.)
        assert f"{registry.label(name)} in {ZONE} on Block Storage ({BLOCK_TYPE})\n" in result.log
    chain = [m.NAME for m in registry.modules() if m.SHARED]
    # The servers' roots were Block volumes (recorded and tagged), never l_ssd volumes.
    assert "created block volume" in results[chain[0]].log
    assert "created block volume" in results["rescue"].log
    assert "created volume" not in "".join(r.log for r in results.values())
    # Everything the run made is gone, Block volumes included.
    assert tagged_block(tags.run_tag(block_run.pk)) == ([], [])
    assert counts(cloud) == before
    assert block_run.kept_resources == [] and block_run.error == ""
    # The local run is untouched: still queued, for its own worker.
    assert TestRun.objects.get(pk=runs[0].pk).state == RunState.QUEUED


def block_harness(version: ImageVersion, run: TestRun) -> Harness:
    image = LocalImage.objects.get(version=version, zone__code=ZONE, storage_type=run.storage_type)
    spec = RunSpec(
        test_run_id=run.pk,
        zone=ZONE,
        image_id=image.provider_image_id,
        tags=tuple(tags.tags_for_run(run.pk, None)),
        keep_on_failure=False,
        commercial_type=commercial_type_for(run.storage_type),
        boot_timeout=2,
        ssh_timeout=5,
        action_timeout=30,
        storage_type=run.storage_type,
    )
    harness = Harness(spec, Reporter(), threading.Event())
    harness.open()
    return harness


def test_block_checks_act_on_block_resources_and_the_ledger_deletes_them(
    cloud: Cloud, version: ImageVersion
) -> None:
    [run] = orchestration.create_runs(
        version, [Zone.objects.get(code=ZONE)], storage_types=[StorageType.SBS]
    )
    tag = tags.run_tag(run.pk)
    before = counts(cloud)
    block, instance = clients.block_api(), clients.instance_api()
    harness = block_harness(version, run)
    try:
        # The source server: a Block root, tagged with the run, invisible to the Instance API.
        ctx = harness.context("hot_snapshot")
        server = ctx.create_server("source", start=False)
        assert str(ctx.get_server(server).commercial_type) == BLOCK_TYPE
        root = ctx.root_volume(server)
        assert root.volume_type == "sbs_volume"
        volume = block.get_volume(zone=ZONE, volume_id=root.id)
        assert tag in volume.tags
        assert [r.product_resource_id for r in volume.references] == [server]
        with pytest.raises(ScalewayException) as missing:
            instance.get_volume(zone=ZONE, volume_id=root.id)
        assert missing.value.status_code == 404
        ctx.act(server, "poweron", RUNNING)

        # Hot snapshot: a Block snapshot of the Block root, not an Instance snapshot.
        snapshot = snapshot_root(ctx, server)
        found = block.get_snapshot(zone=ZONE, snapshot_id=snapshot.id)
        assert found.status == "available" and tag in found.tags
        assert found.parent_volume is not None and found.parent_volume.id == root.id
        assert not [s for s in instance.list_snapshots_all(zone=ZONE) if tag in (s.tags or [])]

        # Backup: an image over Block snapshots, tagged through the Block API.
        image_id = backup.capture(harness.context("backup"), server)
        image = instance.get_image(zone=ZONE, image_id=image_id).image
        assert image.root_volume.volume_type == "sbs_snapshot"
        backed = block.get_snapshot(zone=ZONE, snapshot_id=image.root_volume.id)
        assert tag in backed.tags

        # A copy boots from the Block snapshot: its root is a new Block volume made from it.
        copy_ctx = harness.context("cold_snapshot")
        copy = copy_ctx.create_server("cold-copy", base_snapshot=snapshot.id, start=False)
        copy_root = copy_ctx.root_volume(copy)
        assert copy_root.volume_type == "sbs_volume" and copy_root.id != root.id
        made = block.get_volume(zone=ZONE, volume_id=copy_root.id)
        assert made.parent_snapshot_id == snapshot.id and tag in made.tags

        # Archive on Block: stopped, the same Block root stays attached and in use.
        archive_ctx = harness.context("archive")
        archive.attached_to(archive_ctx, server, root.id, when="running")
        archive_ctx.act(server, "poweroff", STOPPED)
        assert str(archive_ctx.get_server(server).state) == "stopped"
        assert archive_ctx.root_volume(server).id == root.id
        archive.attached_to(archive_ctx, server, root.id, when="powered off")
        # Not attached to another server: the assertion fails, naming the volume.
        with pytest.raises(CheckFailed, match=f"Block root volume {root.id} is not attached"):
            archive.attached_to(archive_ctx, copy, root.id, when="powered off")

        kinds = sorted({e.kind for e in harness.ledger.entries()})
        assert kinds == ["block_snapshot", "block_volume", "image", "server"]
        assert tagged_block(tag)[0] and tagged_block(tag)[1]
    finally:
        kept, errors = harness.close([])
    assert kept == [] and errors == []
    # The ledger deleted every Block volume and snapshot, the backup's image and the servers.
    assert tagged_block(tag) == ([], [])
    assert not [i for i in instance.list_images_all(zone=ZONE) if tag in (i.tags or [])]
    assert counts(cloud) == before


def test_a_local_run_snapshots_through_the_instance_api(
    cloud: Cloud, version: ImageVersion
) -> None:
    [run] = orchestration.create_runs(
        version, [Zone.objects.get(code=ZONE)], storage_types=[StorageType.LOCAL]
    )
    tag = tags.run_tag(run.pk)
    instance = clients.instance_api()
    harness = block_harness(version, run)
    try:
        ctx = harness.context("cold_snapshot")
        server = ctx.create_server("source", start=False)
        assert str(ctx.get_server(server).commercial_type) == "DEV1-S"
        assert ctx.root_volume(server).volume_type == "l_ssd"
        snapshot = snapshot_root(ctx, server)
        assert instance.get_snapshot(zone=ZONE, snapshot_id=snapshot.id).snapshot.id
        assert tagged_block(tag) == ([], [])
    finally:
        kept, errors = harness.close([])
    assert kept == [] and errors == []


def test_the_build_test_stage_runs_each_zone_on_each_storage_type_published_there(
    cloud: Cloud, version: ImageVersion, settings
) -> None:
    from builds.choices import StageName
    from builds.models import Stage, StageLogLine
    from builds.stages import test as test_stage
    from builds.stages.context import StageContext

    settings.BUILD_TEST_STAGE = True
    settings.TEST_CHECK_CONCURRENCY = 6
    build = version.build
    stage = Stage.objects.create(build=build, name=StageName.TEST)

    outputs = test_stage.run(StageContext(build=build, stage=stage, worker="worker-1"))

    runs = list(TestRun.objects.filter(build=build).order_by("pk"))
    assert [(r.zone.code, r.storage_type) for r in runs] == [
        (ZONE, StorageType.LOCAL),
        (ZONE, StorageType.SBS),
    ]
    assert sorted(outputs["runs"]) == [r.pk for r in runs]
    assert all(r.state == RunState.FINISHED for r in runs)
    lines = "\n".join(StageLogLine.objects.filter(stage=stage).values_list("text", flat=True))
    assert f"in {ZONE} on local storage, {ZONE} on Block Storage (12 checks each" in lines
    # The timer backend's servers never answer: a red matrix, on both storage types.
    grid = orchestration.matrix(version)
    assert grid.storage_types == [StorageType.LOCAL, StorageType.SBS]
    assert not grid.green(ZONE, StorageType.LOCAL) and not grid.green(ZONE, StorageType.SBS)
    assert outputs["verdict"] == "not passed"
    for run in runs:
        assert tagged_block(tags.run_tag(run.pk)) == ([], [])
