"""Starting a VM, as `make run` starts localcloud (bin/service, a state directory relative to
the project's folder), and a start that cannot succeed.

No guest has to boot: an empty disk is enough for QEMU to run (SeaBIOS finds nothing to boot),
so these tests take seconds. They are marked `vm` because they run QEMU.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from scaleway.instance.v1.custom_api import InstanceUtilsV1API

from localcloud.machines.qemu import backing_file
from tests.localcloud.conftest import QemuCloud, import_image, sdk_client

pytestmark = [
    pytest.mark.vm,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no QEMU"),
]


@pytest.fixture(scope="module")
def api(qemu_cloud: QemuCloud) -> InstanceUtilsV1API:
    return InstanceUtilsV1API(sdk_client(qemu_cloud))


@pytest.fixture(scope="module")
def empty_image(qemu_cloud: QemuCloud, api: InstanceUtilsV1API, tmp_path_factory):
    disk = tmp_path_factory.mktemp("disk") / "empty.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
    return import_image(qemu_cloud, api, disk, "empty")


def _server(api: InstanceUtilsV1API, image, name: str):
    return api.create_server(commercial_type="DEV1-S", image=image.id, name=name).server


def _settled(api: InstanceUtilsV1API, server_id: str, timeout: float = 120.0):
    """The server once it has left the transitional states (or the last one seen)."""
    deadline = time.monotonic() + timeout
    while True:
        server = api.get_server(server_id=server_id).server
        if str(server.state) not in ("starting", "stopping") or time.monotonic() > deadline:
            return server
        time.sleep(0.5)


def test_the_state_directory_is_given_relative_as_make_run_gives_it(qemu_cloud: QemuCloud) -> None:
    command = Path(f"/proc/{qemu_cloud.proc.pid}/cmdline").read_bytes().split(b"\0")
    given = command[command.index(b"--state-dir") + 1].decode()
    assert not Path(given).is_absolute()


def test_a_server_starts_from_a_relative_state_directory(
    qemu_cloud: QemuCloud, api: InstanceUtilsV1API, empty_image
) -> None:
    server = _server(api, empty_image, "relative")
    api.server_action(server_id=server.id, action="poweron")

    server = _settled(api, server.id)

    assert (str(server.state), server.state_detail) == ("running", "booting kernel")
    disk = qemu_cloud.state_dir / "volumes" / f"{server.volumes['0'].id}.qcow2"
    base = backing_file(disk)
    assert base is not None and Path(base).is_absolute() and Path(base).exists()
    api.server_action(server_id=server.id, action="terminate")


def test_a_start_that_fails_puts_the_server_back_to_stopped_with_the_reason(
    qemu_cloud: QemuCloud, api: InstanceUtilsV1API, tmp_path: Path
) -> None:
    disk = tmp_path / "doomed.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
    image = import_image(qemu_cloud, api, disk, "doomed")
    # The image's data is damaged after the import: the VM's disk cannot be made on it.
    blob = qemu_cloud.state_dir / "blobs" / f"{image.root_volume.id}.qcow2"
    blob.write_bytes(b"not a disk image" * 64)
    server = _server(api, image, "doomed")

    api.server_action(server_id=server.id, action="poweron")
    server = _settled(api, server.id)

    assert str(server.state) == "stopped"
    assert server.state_detail.startswith("boot failed: ")
    assert "poweron" in server.allowed_actions  # it can be started again, as after a poweroff
    logged = (qemu_cloud.state_dir.parent / "localcloud.log").read_text(errors="replace")
    assert f"server {server.id}: start failed" in logged
