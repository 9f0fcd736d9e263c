"""The QEMU machine backend end to end (tests marked `vm`): localcloud as a subprocess with
`LOCALCLOUD_MACHINES=qemu`, the real SDK, real VMs booted from the bootable Debian image
(imported the way the product imports images: S3 object -> snapshot -> image), and SSH into
them at the address the operator's endpoint route names.

Boots are expensive under TCG (a minute or more each on a shared 2-core host), so one test
walks through many checks on the same VM. Boot-to-SSH times are printed (run with -s) and
written to `$LOCALCLOUD_VM_TIMINGS` when set. The first tests need no VM: the security group
filter and the metadata service (over HTTP, against an in-process localcloud).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from scaleway import Client
from scaleway.block.v1 import BlockV1API, CreateVolumeRequestFromEmpty
from scaleway.instance.v1 import BootType, ServerAction
from scaleway.instance.v1.custom_api import InstanceUtilsV1API
from scaleway.vpc.v2 import VpcV2API

from localcloud.machines.qemu import allowed_ports
from tests.localcloud.conftest import (
    PROJECT,
    SECRET,
    STATE_TIMEOUT,
    LocalCloudProcess,
    QemuCloud,
    _free_port,
    import_image,
    qemus_of,
    sdk_client,
    wait_until,
)

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no QEMU")

BOOT_TIMEOUT = 900.0  # TCG on a busy shared host
TIMINGS: dict[str, float] = {}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vm-test", "-f", str(key)],
        check=True,
    )
    return key


@pytest.fixture(scope="module")
def bootable_image() -> Path:
    from tests.fixtures.bootable import bootable_debian_image

    return bootable_debian_image("ready")


@pytest.fixture(scope="module")
def client(qemu_cloud: QemuCloud) -> Client:
    return sdk_client(qemu_cloud)


@pytest.fixture(scope="module")
def api(client: Client) -> InstanceUtilsV1API:
    return InstanceUtilsV1API(client)


@pytest.fixture(scope="module")
def image(qemu_cloud: QemuCloud, api: InstanceUtilsV1API, bootable_image: Path):
    return import_image(qemu_cloud, api, bootable_image, "debian")


# --- the guest --------------------------------------------------------------------------------


@dataclass
class Guest:
    """A server's guest over SSH, at the endpoint localcloud's operator route names."""

    cloud: LocalCloudProcess
    server_id: str
    key: Path

    def endpoint(self) -> tuple[str, int] | None:
        answer = requests.get(
            f"{self.cloud.url}/localcloud/v1/zones/fr-par-1/servers/{self.server_id}/endpoint",
            params={"port": 22},
            timeout=10,
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return answer.json()["host"], answer.json()["port"]

    def ssh(self, command: str, timeout: float = 60, check: bool = True) -> str:
        endpoint = self.endpoint()
        assert endpoint is not None, "port 22 is not forwarded"
        host, port = endpoint
        done = subprocess.run(
            [
                "ssh",
                *("-i", str(self.key), "-p", str(port)),
                *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"),
                *("-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"),
                f"root@{host}",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert done.returncode == 0, f"{command!r} failed: {done.stderr}{done.stdout}"
        return done.stdout.strip()

    def try_ssh(self, command: str, timeout: float = 30) -> str | None:
        """The output of `command`, or None when the guest cannot be reached now."""
        try:
            if self.endpoint() is None:
                return None
            return self.ssh(command, timeout=timeout)
        except (subprocess.TimeoutExpired, AssertionError):
            return None

    def wait_ssh(self, label: str, since: float | None = None) -> float:
        """Wait until a command runs over SSH; record and return the seconds it took."""
        started = time.monotonic() if since is None else since
        deadline = started + BOOT_TIMEOUT
        while True:
            # The banner first: cheap, and it does not hang while the guest is still down.
            endpoint = self.endpoint()
            if endpoint and self.tcp_open(*endpoint) and self.try_ssh("echo ok") == "ok":
                break
            assert time.monotonic() < deadline, f"no SSH on server {self.server_id} ({label})"
            time.sleep(1)
        seconds = round(time.monotonic() - started, 1)
        TIMINGS[label] = seconds
        print(f"\nboot-to-SSH {label}: {seconds} s")
        path = os.environ.get("LOCALCLOUD_VM_TIMINGS")
        if path:
            Path(path).write_text(json.dumps(TIMINGS, indent=2))
        return seconds

    def tcp_open(self, host: str, port: int) -> bool:
        """Does the guest's SSH server greet on host:port? (A forward alone accepts and
        closes; a paused guest accepts and stays silent.)"""
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                conn.settimeout(5)
                return conn.recv(64).startswith(b"SSH-")
        except OSError:
            return False


def _server(api: InstanceUtilsV1API, image, name: str, key: Path, **extra):
    tag = "AUTHORIZED_KEY=" + key.with_suffix(".pub").read_text().strip().replace(" ", "_")
    return api.create_server(
        commercial_type="DEV1-S", name=name, image=image.id, tags=[tag], **extra
    ).server


def _state(api: InstanceUtilsV1API, server_id: str, state: str, timeout: float = STATE_TIMEOUT):
    return wait_until(
        lambda: api.get_server(server_id=server_id).server,
        lambda s: s.state == state,
        timeout,
        f"server {server_id} {state}",
    )


def _boot(api, cloud, server, key: Path, label: str) -> Guest:
    started = time.monotonic()
    api.server_action(server_id=server.id, action=ServerAction.POWERON)
    guest = Guest(cloud, server.id, key)
    guest.wait_ssh(label, since=started)
    return guest


def _terminate(api: InstanceUtilsV1API, server_id: str) -> None:
    server = api.get_server(server_id=server_id).server
    if server.state == "stopped":
        api.delete_server(server_id=server_id)
        return
    api.server_action(server_id=server_id, action=ServerAction.TERMINATE)
    wait_until(
        lambda: [s.id for s in api.list_servers().servers],
        lambda ids: server_id not in ids,
        what=f"server {server_id} gone",
    )


# --- without a VM -----------------------------------------------------------------------------


def _rule(position: int, action: str, port: int | None = None, **extra) -> dict:
    return {
        "position": position,
        "action": action,
        "direction": extra.get("direction", "inbound"),
        "protocol": extra.get("protocol", "TCP"),
        "ip_range": extra.get("ip_range", "0.0.0.0/0"),
        "dest_port_from": port,
        "dest_port_to": extra.get("port_to"),
    }


def test_forwarded_ports_follow_the_inbound_rules() -> None:
    accept_all = {"inbound_default_policy": "accept"}
    drop_all = {"inbound_default_policy": "drop"}
    assert allowed_ports(accept_all, []) == [22, 80, 443]
    assert allowed_ports(drop_all, []) == []
    # First match by position; outbound, UDP and IPv6 rules do not count.
    rules = [
        _rule(2, "accept", 22),
        _rule(1, "drop", 22),
        _rule(3, "drop", 80, direction="outbound"),
        _rule(4, "drop", 443, protocol="UDP"),
        _rule(5, "drop", 443, ip_range="::/0"),
    ]
    assert allowed_ports(accept_all, rules) == [80, 443]
    # A rule names a port outside the watched set; a range is capped at 64 ports.
    ranged = [_rule(1, "accept", 8080), _rule(2, "accept", 9000, port_to=9999)]
    assert allowed_ports(drop_all, ranged) == [8080, *range(9000, 9064)]
    # A rule without a port (or protocol ANY) covers every port.
    assert allowed_ports(drop_all, [_rule(1, "accept", protocol="ANY")]) == [22, 80, 443]
    # A port a deleted rule named is still watched, so the default policy opens it again.
    assert allowed_ports(accept_all, [], remembered=[8080]) == [22, 80, 443, 8080]


def test_metadata_service_over_http(tmp_path: Path, ssh_key: Path) -> None:
    """The service against a real (in-process) localcloud: the guest's view of its server,
    in both formats, its user data, and the booted signal written back to the record."""
    from localcloud.app import LocalCloud
    from localcloud.http import Request
    from localcloud.metadata import MetadataService

    cloud = LocalCloud(tmp_path / "state", machines="timer")

    def call(method: str, path: str, body: bytes = b"", content_type: str = "application/json"):
        headers = {"X-Auth-Token": SECRET, "Content-Type": content_type}
        base = "/instance/v1/zones/fr-par-1"
        return cloud.handle(Request.parse(method, base + path, headers, body))

    public_key = ssh_key.with_suffix(".pub").read_text().strip()
    body = {
        "name": "web-1",
        "commercial_type": "DEV1-S",
        "project": PROJECT,
        "volumes": {"0": {"size": 10 * 1000**3, "volume_type": "l_ssd"}},
        "tags": ["web", "AUTHORIZED_KEY=" + public_key.replace(" ", "_")],
    }
    server = call("POST", "/servers", json.dumps(body).encode()).body["server"]
    call("PATCH", f"/servers/{server['id']}/user_data/cloud-init", b"#cloud-config\n", "text/plain")
    service = MetadataService(
        cloud,
        lambda address: server["id"] if address == "127.0.0.1" else None,
        guest_ipv4="169.0.0.15",
        gateway="169.0.0.2",
    )
    service.start()
    url = f"http://127.0.0.1:{service.port}"
    try:
        assert requests.get(url + "/", timeout=5).text
        conf = requests.get(url + "/conf?format=json", timeout=5).json()
        assert (conf["id"], conf["hostname"], conf["commercial_type"]) == (
            server["id"],
            "web-1",
            "DEV1-S",
        )
        assert conf["ssh_public_keys"][0]["key"] == public_key
        assert conf["ssh_public_keys"][0]["fingerprint"].startswith("256 SHA256:")
        assert conf["public_ip"]["address"] == "169.0.0.15"
        assert (conf["ipv6"], conf["private_ip"], conf["private_nics"]) == (None, None, [])
        assert conf["volumes"]["0"]["volume_type"] == "l_ssd"
        text = requests.get(url + "/conf", timeout=5).text.splitlines()
        assert f"ID={server['id']}" in text
        assert "TAGS=2" in text and "TAGS_0=web" in text
        assert f"SSH_PUBLIC_KEYS_0_KEY='{public_key}'" in text
        assert "IPV6=" in text
        assert requests.get(url + "/user_data", timeout=5).text == "cloud-init\n"
        user_data = requests.get(url + "/user_data/cloud-init", timeout=5)
        assert user_data.content == b"#cloud-config\n"
        assert requests.get(url + "/user_data/other", timeout=5).status_code == 404
        signalled = requests.patch(url + "/state", json={"state_detail": "booted"}, timeout=5)
        assert signalled.status_code == 200
        record = call("GET", f"/servers/{server['id']}").body["server"]
        assert record["state_detail"] == "booted"
    finally:
        service.stop()


# --- with VMs ---------------------------------------------------------------------------------


@pytest.mark.vm
@pytest.mark.extra
@needs_qemu
def test_a_server_is_a_real_vm(qemu_cloud, client, api, image, ssh_key) -> None:
    """Boot, metadata, reboot, stop in place, security group, SBS hot-plug, hot snapshot."""
    server = _server(api, image, "web-1", ssh_key)
    address = server.public_ip.address
    guest = _boot(api, qemu_cloud, server, ssh_key, "first boot")
    assert guest.endpoint()[0] == address  # the public IP is where the host reaches it
    running = wait_until(
        lambda: api.get_server(server_id=server.id).server,
        lambda s: s.state_detail == "booted",
        what="the guest's booted signal",
    )
    assert running.state == "running"
    boot_id = guest.ssh("cat /proc/sys/kernel/random/boot_id")

    # The metadata service, from inside the guest.
    conf = json.loads(guest.ssh("curl -sf http://169.254.42.42/conf?format=json"))
    assert (conf["id"], conf["name"], conf["commercial_type"]) == (server.id, "web-1", "DEV1-S")
    assert conf["ssh_public_keys"][0]["key"] == ssh_key.with_suffix(".pub").read_text().strip()
    assert conf["ipv6"] is None and conf["private_ip"] is None
    text = guest.ssh("curl -sf http://169.254.42.42/conf")
    assert f"ID={server.id}" in text.splitlines() and "SSH_PUBLIC_KEYS=1" in text.splitlines()
    assert guest.ssh("cat /sys/class/dmi/id/sys_vendor") == "Scaleway"
    assert guest.ssh("cat /sys/class/dmi/id/product_name") == "DEV1-S"

    # Reboot: a new boot, the same disk, the same endpoint.
    guest.ssh("echo kept > /root/marker && sync")
    host, port = guest.endpoint()
    started = time.monotonic()
    api.server_action(server_id=server.id, action=ServerAction.REBOOT)
    wait_until(
        lambda: (
            guest.try_ssh("cat /proc/sys/kernel/random/boot_id")
            if guest.tcp_open(host, port)
            else None
        ),
        lambda value: value not in (None, "", boot_id),
        BOOT_TIMEOUT,
        "a new boot id",
    )
    TIMINGS["reboot"] = round(time.monotonic() - started, 1)
    print(f"\nreboot-to-SSH: {TIMINGS['reboot']} s")
    assert guest.ssh("cat /root/marker") == "kept"
    assert guest.endpoint() == (host, port)
    boot_id = guest.ssh("cat /proc/sys/kernel/random/boot_id")
    _state(api, server.id, "running")

    # Stop in place: the vCPUs stop, poweron resumes the same boot.
    api.server_action(server_id=server.id, action=ServerAction.STOP_IN_PLACE)
    _state(api, server.id, "stopped in place")
    assert not guest.tcp_open(host, port)
    api.server_action(server_id=server.id, action=ServerAction.POWERON)
    _state(api, server.id, "running")
    wait_until(lambda: guest.tcp_open(host, port), bool, what="SSH after resuming")
    assert guest.ssh("cat /proc/sys/kernel/random/boot_id") == boot_id

    # Security group: an inbound drop rule on 22 closes the port from outside, removing it
    # opens it again (on the same host port).
    group_id = api.get_server(server_id=server.id).server.security_group.id
    rule = api.create_security_group_rule(
        security_group_id=group_id,
        protocol="TCP",
        direction="inbound",
        action="drop",
        ip_range="0.0.0.0/0",
        position=1,
        editable=True,
        dest_port_from=22,
    ).rule
    wait_until(guest.endpoint, lambda found: found is None, 60, "port 22 closed")
    wait_until(lambda: guest.tcp_open(host, port), lambda opened: not opened, 60, "refused")
    api.delete_security_group_rule(security_group_id=group_id, security_group_rule_id=rule.id)
    wait_until(guest.endpoint, lambda found: found == (host, port), 60, "port 22 open again")
    wait_until(lambda: guest.tcp_open(host, port), bool, 60, "SSH again")

    # An SBS volume hot-plugged into the running server, then detached.
    block = BlockV1API(client)
    volume = block.create_volume(
        name="data", perf_iops=5000, from_empty=CreateVolumeRequestFromEmpty(size=2 * 1000**3)
    )
    block.wait_for_volume(volume_id=volume.id)
    api.attach_server_volume(server_id=server.id, volume_id=volume.id, volume_type="sbs_volume")
    serial = volume.id.replace("-", "")[:20]
    wait_until(
        lambda: guest.ssh("cat /sys/block/vdb/serial 2>/dev/null || true"),
        lambda found: found == serial,
        120,
        "/dev/vdb in the guest",
    )
    assert guest.ssh("blockdev --getsize64 /dev/vdb") == str(2 * 1000**3)
    api.detach_server_volume(server_id=server.id, volume_id=volume.id)
    wait_until(
        lambda: guest.ssh("test -e /sys/block/vdb && echo present || echo gone"),
        lambda found: found == "gone",
        120,
        "/dev/vdb unplugged",
    )
    wait_until(
        lambda: block.get_volume(volume_id=volume.id).status,
        lambda status: status == "available",
        what="the volume free again",
    )
    block.delete_volume(volume_id=volume.id)

    # A hot snapshot of the root volume; a new server from it sees the file.
    guest.ssh("echo hot > /root/hot-marker && sync")
    root_id = api.get_server(server_id=server.id).server.volumes["0"].id
    started = time.monotonic()
    snapshot = api.create_snapshot(volume_id=root_id, name="hot").snapshot
    assert snapshot.state == "snapshotting"
    wait_until(
        lambda: api.get_snapshot(snapshot_id=snapshot.id).snapshot.state,
        lambda state: state == "available",
        what="the hot snapshot",
    )
    TIMINGS["hot snapshot"] = round(time.monotonic() - started, 1)
    assert guest.ssh("cat /root/hot-marker") == "hot"  # the source kept running
    clone_image = api.create_image(root_volume=snapshot.id, arch="x86_64", name="hot").image
    clone = _server(api, clone_image, "web-2", ssh_key)
    clone_guest = _boot(api, qemu_cloud, clone, ssh_key, "boot from a hot snapshot")
    assert clone_guest.endpoint()[0] == clone.public_ip.address != address
    assert clone_guest.ssh("cat /root/hot-marker /root/marker") == "hot\nkept"

    for server_id in (clone.id, server.id):
        _terminate(api, server_id)
    wait_until(lambda: qemus_of(qemu_cloud.state_dir), lambda pids: not pids, 120, "VMs gone")
    assert not list((qemu_cloud.state_dir / "volumes").glob("*.qcow2"))


@pytest.mark.vm
@pytest.mark.extra
@needs_qemu
def test_rescue_boot_sees_the_disk_then_local_boot(qemu_cloud, api, image, ssh_key) -> None:
    """boot_type rescue boots the rescue system with the root disk attached; back to local,
    the image's bootloader boots again with a file written from rescue (archive: poweroff
    keeps the disk)."""
    server = _server(api, image, "rescued", ssh_key, boot_type=BootType.RESCUE)
    guest = _boot(api, qemu_cloud, server, ssh_key, "rescue boot")
    assert guest.ssh("cat /etc/scw-rescue") == "rescue"
    assert "vda" in guest.ssh("cat /proc/partitions")
    guest.ssh(
        "mkdir -p /mnt/root && mount /dev/vda1 /mnt/root && cat /mnt/root/etc/debian_version"
        " && echo from-rescue > /mnt/root/root/rescue-marker && umount /mnt/root && sync"
    )
    api.server_action(server_id=server.id, action=ServerAction.POWEROFF)
    _state(api, server.id, "stopped")
    api._update_server(server_id=server.id, boot_type=BootType.LOCAL)  # the SDK names it so
    guest = _boot(api, qemu_cloud, server, ssh_key, "local boot after rescue")
    assert guest.ssh("test -e /etc/scw-rescue || echo debian") == "debian"
    assert guest.ssh("cat /root/rescue-marker") == "from-rescue"
    _terminate(api, server.id)


@pytest.mark.vm
@pytest.mark.extra
@needs_qemu
def test_private_network_neighbours(qemu_cloud, client, api, image, ssh_key) -> None:
    """Two servers on one private network get their IPAM addresses by DHCP and reach each
    other by `<name>.<network>.internal`; one NIC exists at boot, the other is hot-plugged."""
    network = VpcV2API(client).create_private_network(
        default_route_propagation_enabled=False, name="backend"
    )
    first = _server(api, image, "alpha", ssh_key)
    second = _server(api, image, "beta", ssh_key)
    api.create_private_nic(server_id=first.id, private_network_id=network.id)
    api.server_action(server_id=first.id, action=ServerAction.POWERON)
    started = time.monotonic()
    api.server_action(server_id=second.id, action=ServerAction.POWERON)
    alpha = Guest(qemu_cloud, first.id, ssh_key)
    beta = Guest(qemu_cloud, second.id, ssh_key)
    alpha.wait_ssh("two servers at once (alpha)", since=started)
    beta.wait_ssh("two servers at once (beta)", since=started)
    api.create_private_nic(server_id=second.id, private_network_id=network.id)  # hot-plugged

    from scaleway.ipam.v1 import IpamV1API

    def address(server_id: str) -> str:
        nic = api.list_private_ni_cs(server_id=server_id).private_nics[0]
        ips = IpamV1API(client).list_i_ps(resource_id=nic.id, is_ipv6=False).ips
        return ips[0].address.split("/")[0]

    alpha_ip, beta_ip = address(first.id), address(second.id)
    for guest, ip in ((alpha, alpha_ip), (beta, beta_ip)):
        wait_until(
            lambda g=guest: g.ssh("ip -4 -o addr show"),
            lambda found, ip=ip: f" {ip}/" in found,
            180,
            f"the DHCP address {ip}",
        )
    # The image has no ping: name resolution, then a TCP connection to the neighbour's sshd.
    assert alpha.ssh("getent hosts beta.backend.internal").split()[0] == beta_ip
    assert beta.ssh("getent hosts alpha.backend.internal").split()[0] == alpha_ip
    alpha.ssh("nc -z -w 10 beta.backend.internal 22")
    beta.ssh("nc -z -w 10 alpha.backend.internal 22")
    for server_id in (first.id, second.id):
        _terminate(api, server_id)


@pytest.mark.vm
@needs_qemu
def test_a_crash_leaves_no_vm_behind(tmp_path: Path, ssh_key: Path) -> None:
    """SIGKILL localcloud with a VM running, plus a QEMU it started in an earlier life (a
    stand-in that does not die with it): the restart on the same state dir reaps them."""
    cloud = QemuCloud(state_dir=tmp_path / "state", port=_free_port(3))
    cloud.start()
    try:
        api = InstanceUtilsV1API(sdk_client(cloud))
        disk = tmp_path / "blank.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True)
        image = import_image(cloud, api, disk, "blank")
        # The rescue system boots without anything on the disk, and fast.
        server = _server(api, image, "doomed", ssh_key, boot_type=BootType.RESCUE)
        api.server_action(server_id=server.id, action=ServerAction.POWERON)
        _state(api, server.id, "running")
        assert qemus_of(cloud.state_dir)
        leftover_dir = cloud.state_dir / "machines" / "leftover"
        leftover_dir.mkdir(parents=True)
        leftover = subprocess.Popen(
            [
                "qemu-system-x86_64",
                *("-machine", "none", "-display", "none", "-nodefaults", "-S"),
                *("-pidfile", str(leftover_dir / "qemu.pid")),
            ],
            start_new_session=True,
        )
        wait_until(lambda: (leftover_dir / "qemu.pid").exists(), bool, 30, "the stand-in's pidfile")
        cloud.kill()
        cloud.start()
        assert leftover.wait(timeout=30) is not None
        assert not qemus_of(cloud.state_dir)
        restarted = api.get_server(server_id=server.id).server
        assert (restarted.state, restarted.state_detail) == ("stopped", "")
    finally:
        cloud.stop()
