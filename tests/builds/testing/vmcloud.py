"""localcloud running real VMs (`LOCALCLOUD_MACHINES=qemu`) for the test-run tests.

One `python -m localcloud` subprocess per test session, started with the QEMU machine
backend; the bootable fixture image (and broken variants of it made here with libguestfs)
published into it once per session by the product's own `builds.publish.publish`; and the
rows a test needs to point a TestRun at those published images.

The database is flushed between the (transactional) tests, so what is cached across tests
is the cloud side only: which instance image of which zone holds which variant.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import guestfs
import pytest

from tests.cloud.localcloud import ACCESS_KEY, PROJECT_ID, SECRET_KEY
from tests.fixtures.bootable import ROOT_PARTITION, bootable_debian_image
from tests.fixtures.images import cache_dir
from tests.localcloud.conftest import LocalCloudProcess, _free_port

VARIANTS = ("ready", "no-sshd", "no-network")
DEFAULT_RULES = "instance_security_group_rule"  # the kind of a default group's rules
# What each broken variant changes in the "ready" image (part of the variant's cache key).
BREAKAGE = {
    # sshd never starts: its units are masked and the enablement links are gone.
    "no-sshd": (
        "rm -f /etc/systemd/system/multi-user.target.wants/ssh.service"
        " /etc/systemd/system/sshd.service /etc/systemd/system/sockets.target.wants/ssh.socket"
        " && ln -sf /dev/null /etc/systemd/system/ssh.service"
        " && ln -sf /dev/null /etc/systemd/system/ssh.socket"
    ),
    # No networkd configuration at all: no interface gets an address.
    "no-network": (
        "rm -f /etc/systemd/network/*.network /usr/lib/systemd/network/*.network"
        " /lib/systemd/network/*.network"
    ),
}


# --- the localcloud process ------------------------------------------------------------------


@dataclass
class VmCloudProcess(LocalCloudProcess):
    """localcloud with the QEMU machine backend (its VMs are this process's children)."""

    extra_env: dict[str, str] = field(default_factory=dict)

    start_timeout = 300.0

    def environment(self) -> dict[str, str]:
        # What `make run` gives localcloud (bin/service): QEMU machines with the default
        # accelerator probe, vCPUs and memory, and the real transition timings.
        return {"LOCALCLOUD_MACHINES": "qemu", **self.extra_env}

    def inventory(self) -> dict[str, list[dict]]:
        return self.operator("GET", "inventory")

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / "localcloud.log"


_PROCESS: list[VmCloudProcess] = []
_PROCESS_LOCK = threading.Lock()


def vm_cloud() -> VmCloudProcess:
    """The session's localcloud with real VMs (started on first use, stopped at exit)."""
    with _PROCESS_LOCK:
        if not _PROCESS:
            root = Path(tempfile.mkdtemp(prefix="localcloud-vm-tests-"))
            # The disks go at exit (after the stop below); localcloud.log stays for a post-mortem.
            atexit.register(shutil.rmtree, root / "state", True)
            cloud = VmCloudProcess(state_dir=root / "state", port=_free_port(3))
            cloud.state_dir.mkdir(parents=True)
            cloud.start()
            atexit.register(cloud.stop)
            _PROCESS.append(cloud)
        return _PROCESS[0]


def scw_environment(cloud: VmCloudProcess) -> dict[str, str]:
    """The SCW_* variables that point the SDK (and so the factory) at `cloud`."""
    return {
        "SCW_API_URL": cloud.url,
        "SCW_ACCESS_KEY": ACCESS_KEY,
        "SCW_SECRET_KEY": SECRET_KEY,
        "SCW_DEFAULT_PROJECT_ID": PROJECT_ID,
        "SCW_DEFAULT_ZONE": "fr-par-1",
        "SCW_DEFAULT_REGION": "fr-par",
        "SCW_S3_ENDPOINTS": ",".join(f"{r}={u}" for r, u in cloud.s3.items()),
    }


# --- the images --------------------------------------------------------------------------------


def image_file(variant: str) -> Path:
    """The QCOW2 of a variant: the fixture's "ready" image, or a broken copy of it (cached
    next to it, keyed by the ready image's name and the breakage)."""
    ready = bootable_debian_image("ready")
    if variant == "ready":
        return ready
    recipe = BREAKAGE[variant]
    key = hashlib.sha256(f"{ready.name}\0{recipe}".encode()).hexdigest()[:16]
    folder = cache_dir()
    target = folder / f"debian-bookworm-bootable-{variant}-{key}.qcow2"
    if target.exists():
        return target
    with open(folder / f"{target.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            _break(ready, recipe, target)
    return target


def _break(ready: Path, recipe: str, target: Path) -> None:
    """Apply `recipe` to an overlay of `ready` in one libguestfs launch (the image is never
    booted), then write a standalone compressed QCOW2 (an import refuses backing chains)."""
    with tempfile.TemporaryDirectory(prefix=f".{target.stem}.", dir=target.parent) as scratch:
        overlay = Path(scratch) / "overlay.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(ready), "-F", "qcow2",
             str(overlay)],
            check=True,
        )  # fmt: skip
        g = guestfs.GuestFS(python_return_dict=True)
        try:
            if not os.environ.get("LIBGUESTFS_BACKEND_SETTINGS"):
                g.set_backend_settings(["force_tcg"])
            g.add_drive_opts(str(overlay), format="qcow2", readonly=False)
            g.launch()
            g.mount(ROOT_PARTITION, "/")
            g.sh(recipe)
            g.umount_all()
            g.shutdown()
        finally:
            g.close()
        partial = Path(scratch) / "image.qcow2"
        subprocess.run(
            ["qemu-img", "convert", "-c", "-O", "qcow2", str(overlay), str(partial)], check=True
        )
        os.replace(partial, target)


# --- publishing --------------------------------------------------------------------------------


LOCAL = "instance_local"


@dataclass(frozen=True)
class Published:
    """One variant's instance image in one zone, of one storage type."""

    variant: str
    zone: str
    storage_type: str
    image_id: str
    snapshot_id: str
    build_id: int


_PUBLISHED: dict[tuple[str, str, str], Published] = {}
_PUBLISH_LOCK = threading.Lock()


def publish_variant(
    variant: str, zones: Iterable[str], storage_types: Iterable[str] = (LOCAL,)
) -> dict[tuple[str, str], Published]:
    """The variant's images in `zones`, of `storage_types`, by (zone, storage type), published
    through builds.publish.publish the first time they are asked for (needs the database and
    the SCW_* environment of the test).

    The rows made to publish are deleted again: only the cloud side is kept."""
    from builds.models import Build
    from builds.publish import publish
    from catalog.models import ImageVersion, LocalImage, Zone
    from tests.catalog.factories import os_image

    zones = list(zones)
    kinds = list(storage_types)
    with _PUBLISH_LOCK:
        missing = [z for z in zones if any((variant, z, k) not in _PUBLISHED for k in kinds)]
        if missing:
            artefact = image_file(variant)
            label = f"fixture_{variant.replace('-', '_')}"
            image = os_image(label)
            image.storage_types = [
                k for k in kinds if any((variant, z, k) not in _PUBLISHED for z in missing)
            ]
            image.save(update_fields=["storage_types"])
            version = ImageVersion.objects.create(
                image=image, arch="x86_64", name="2026-11-26", artefact_path=str(artefact)
            )
            build = Build.objects.create(
                image=image, arch="x86_64", state="publishing", version=version
            )
            rows = [
                Zone.objects.get_or_create(code=z, defaults={"enabled": True})[0] for z in missing
            ]
            try:
                published = publish(
                    build_id=build.pk,
                    version=version,
                    artefact=artefact,
                    zones=rows,
                    log=lambda line: None,
                    progress=lambda *args, **kwargs: None,
                    cancelled=lambda: False,
                )
                for local in published:
                    _PUBLISHED[(variant, local.zone.code, local.storage_type)] = Published(
                        variant=variant,
                        zone=local.zone.code,
                        storage_type=local.storage_type,
                        image_id=local.provider_image_id,
                        snapshot_id=local.snapshot_id,
                        build_id=build.pk,
                    )
            finally:
                LocalImage.objects.filter(version=version).delete()
                Build.objects.filter(pk=build.pk).delete()
                version.delete()
                image.delete()
        return {(z, k): _PUBLISHED[(variant, z, k)] for z in zones for k in kinds}


def version_for(
    variant: str, zones: Iterable[str], storage_types: Iterable[str] = (LOCAL,)
):  # -> ImageVersion
    """A version with LocalImages pointing at the variant's published images in `zones`, of
    `storage_types` (local storage unless asked)."""
    from catalog.choices import LocalImageState
    from catalog.models import ImageVersion, LocalImage, Zone
    from tests.catalog.factories import os_image

    zones = list(zones)
    kinds = list(storage_types)
    published = publish_variant(variant, zones, kinds)
    image = os_image(f"tested_{variant.replace('-', '_')}")
    image.storage_types = kinds
    image.save(update_fields=["storage_types"])
    version = ImageVersion.objects.create(image=image, arch="x86_64", name="2026-11-27")
    for (code, kind), found in published.items():
        zone = Zone.objects.get_or_create(code=code, defaults={"enabled": True})[0]
        LocalImage.objects.create(
            version=version,
            zone=zone,
            storage_type=kind,
            provider_image_id=found.image_id,
            snapshot_id=found.snapshot_id,
            state=LocalImageState.AVAILABLE,
        )
    return version


# --- what a run leaves behind ------------------------------------------------------------------


def resource_ids(cloud: VmCloudProcess) -> dict[str, set[str]]:
    """The ids of every resource in localcloud's inventory, by kind, except the defaults the
    cloud makes by itself on first use (a project's default security group and its rules, a
    region's default VPC), which exist on Scaleway from the start."""
    inventory = cloud.inventory()
    defaults = {
        str(item.get("id"))
        for items in inventory.values()
        for item in items
        if isinstance(item, dict) and (item.get("project_default") or item.get("is_default"))
    }
    return {
        kind: {
            str(item.get("id"))
            for item in items
            if isinstance(item, dict)
            and str(item.get("id")) not in defaults
            and not (kind == DEFAULT_RULES and item.get("_security_group_id") in defaults)
        }
        for kind, items in inventory.items()
    }


def tagged(cloud: VmCloudProcess, tag: str) -> list[tuple[str, str]]:
    """(kind, id) of every resource carrying `tag`."""
    return [
        (kind, str(item.get("id")))
        for kind, items in cloud.inventory().items()
        for item in items
        if isinstance(item, dict) and tag in (item.get("tags") or [])
    ]


def new_resources(
    before: dict[str, set[str]], after: dict[str, set[str]], *, ignore: Iterable[str] = ()
) -> dict[str, set[str]]:
    """What appeared between two inventories, by kind (kinds in `ignore` left out)."""
    skipped = set(ignore)
    return {
        kind: ids - before.get(kind, set())
        for kind, ids in after.items()
        if kind not in skipped and ids - before.get(kind, set())
    }


def configure(settings, monkeypatch: pytest.MonkeyPatch, **overrides: object) -> VmCloudProcess:
    """Point the SCW_* environment at the VM cloud and set cloud settings for waiting on VMs
    (plus `overrides`); return the cloud."""
    cloud = vm_cloud()
    for name in ("SCW_CONFIG_PATH", "SCW_PROFILE", "SCW_DEFAULT_ORGANIZATION_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in scw_environment(cloud).items():
        monkeypatch.setenv(name, value)
    settings.CLOUD_POLL_SECONDS = 1.0
    settings.CLOUD_POLL_MAX_SECONDS = 3.0
    settings.CLOUD_RETRY_BASE_SECONDS = 0.5
    settings.CLOUD_RETRY_MAX_SECONDS = 5
    settings.CLOUD_REQUEST_TIMEOUT_SECONDS = 60
    settings.CLOUD_RECOVER_SECONDS = 5
    settings.PUBLISH_BUCKET = "factory-vm-test-artefacts"
    settings.PUBLISH_IMPORT_TIMEOUT_SECONDS = 1800
    settings.PUBLISH_IMAGE_TIMEOUT_SECONDS = 600
    settings.TEST_CHECK_CONCURRENCY = 3  # checks wait on boots and the cloud: 3 beat 2 by ~25%
    for name, value in overrides.items():
        setattr(settings, name, value)
    return cloud
