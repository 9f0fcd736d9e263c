"""The bootable fixture image boots with both firmwares and talks to a real metadata service.

The image is booted under QEMU (TCG) from a copy-on-write overlay. Its user-mode network puts
the guest on 169.0.0.0/8 so that 169.254.42.42 is inside it, and a ``guestfwd`` runs
``nc 127.0.0.1 PORT`` per connection to reach the metadata server of this module, a plain
threaded ``http.server`` on the loopback. The stand-in ecosystem package in the image must then
fetch the SSH key and the hostname from it and ``PATCH /state`` "booted".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import guestfs
import pytest

from tests.fixtures import ecosystem
from tests.fixtures.bootable import bootable_debian_image

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
METADATA_ADDRESS = "169.254.42.42"
# Under TCG on a shared 2-core machine a boot takes one to a few minutes; leave a wide margin.
BOOT_DEADLINE_S = 900
# First use builds the images (debootstrap plus two appliance launches) before booting.
VM_TEST_TIMEOUT_S = 3000
# A second NIC standing for a private network: isolated (restrict=on), with its own DHCP server
# on a documentation range, so the image must bring up every NIC, not just the first one.
PRIVATE_NETDEV = (
    "user,id=n1,restrict=on,net=198.51.100.0/24,host=198.51.100.2,dhcpstart=198.51.100.15"
)
PRIVATE_ADDRESS = "198.51.100.15"
SHELL_SAFE = re.compile(r"[A-Za-z0-9._:/=@+-]*")


def shell_quote(value: str) -> str:
    """Quote a value the way the text metadata does: bare when safe, else single-quoted."""
    if SHELL_SAFE.fullmatch(value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


@dataclass
class Metadata:
    """What the metadata server serves and what it was sent."""

    hostname: str
    ssh_keys: list[str]
    tags: list[str] = field(default_factory=list)
    states: list[dict] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    booted_at: float | None = None

    def as_json(self) -> dict:
        return {
            "id": "11111111-2222-3333-4444-555555555555",
            "name": self.hostname,
            "hostname": self.hostname,
            "commercial_type": "DEV1-S",
            "ssh_public_keys": [{"key": key} for key in self.ssh_keys],
            "tags": self.tags,
            "private_ip": None,
            "ipv6": None,
        }

    def as_text(self) -> str:
        """The ``GET /conf`` text format: KEY=value lines, lists as a count and indexed keys."""
        lines = [
            "ID=11111111-2222-3333-4444-555555555555",
            f"NAME={shell_quote(self.hostname)}",
            f"HOSTNAME={shell_quote(self.hostname)}",
            "COMMERCIAL_TYPE=DEV1-S",
            f"SSH_PUBLIC_KEYS={len(self.ssh_keys)}",
        ]
        for i, key in enumerate(self.ssh_keys):
            lines.append(f"SSH_PUBLIC_KEYS_{i}=KEY")
            lines.append(f"SSH_PUBLIC_KEYS_{i}_KEY={shell_quote(key)}")
        lines.append(f"TAGS={len(self.tags)}")
        lines += [f"TAGS_{i}={shell_quote(tag)}" for i, tag in enumerate(self.tags)]
        return "\n".join(lines) + "\n"


class MetadataServer:
    """A threaded HTTP server on 127.0.0.1 serving ``/``, ``/conf`` and ``PATCH /state``."""

    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata
        self.booted = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                server.metadata.requests.append(f"GET {self.path}")
                if url.path == "/":
                    self._reply(200, b"conf\nstate\nuser_data\n", "text/plain")
                elif url.path == "/conf" and parse_qs(url.query).get("format") == ["json"]:
                    body = json.dumps(server.metadata.as_json()).encode()
                    self._reply(200, body, "application/json")
                elif url.path == "/conf":
                    self._reply(200, server.metadata.as_text().encode(), "text/plain")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def do_PATCH(self) -> None:
                server.metadata.requests.append(f"PATCH {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if urlsplit(self.path).path != "/state":
                    self._reply(404, b"not found\n", "text/plain")
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._reply(400, b'{"message": "invalid JSON"}', "application/json")
                    return
                server.metadata.states.append(body)
                if body.get("state_detail") == "booted" and server.metadata.booted_at is None:
                    server.metadata.booted_at = time.monotonic()
                    server.booted.set()
                self._reply(200, json.dumps(body).encode(), "application/json")

        return Handler

    def __enter__(self) -> MetadataServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_key(folder: Path, name: str) -> tuple[Path, str]:
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@fixture", "-f", str(key)],
        check=True,
    )
    return key, key.with_suffix(".pub").read_text().strip()


def ssh(port: int, key: Path, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port),
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
         "root@127.0.0.1", command],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@dataclass
class Vm:
    process: subprocess.Popen
    ssh_port: int
    console: Path
    started_at: float

    def console_tail(self, lines: int = 40) -> str:
        if not self.console.exists():
            return "(no console output)"
        text = self.console.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture
def boot_vm(tmp_path: Path) -> Iterator:
    """Boot an image under QEMU; every QEMU started is killed when the test ends."""
    started: list[subprocess.Popen] = []

    def boot(image: Path, firmware: str, metadata_port: int | None) -> Vm:
        """Without ``metadata_port`` the network is isolated and 169.254.42.42 unreachable."""
        overlay = tmp_path / f"{firmware}.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2",
             str(overlay)],
            check=True,
        )  # fmt: skip
        ssh_port = free_port()
        console = tmp_path / f"{firmware}-console.log"
        netdev = (
            "user,id=n0,net=169.0.0.0/8,host=169.0.0.2,dns=169.0.0.3,dhcpstart=169.0.0.15,"
            f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22,"
        )
        if metadata_port is None:
            netdev += "restrict=on"
        else:
            netdev += f"guestfwd=tcp:{METADATA_ADDRESS}:80-cmd:nc 127.0.0.1 {metadata_port}"
        command = [
            "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "768",
            "-nographic", "-monitor", "none", "-serial", f"file:{console}",
            "-drive", f"file={overlay},format=qcow2,if=virtio",
            "-device", "virtio-net-pci,netdev=n0", "-netdev", netdev,
            "-device", "virtio-net-pci,netdev=n1", "-netdev", PRIVATE_NETDEV,
        ]  # fmt: skip
        if firmware == "ovmf":
            variables = tmp_path / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, variables)
            command += [
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
            ]  # fmt: skip
        log = open(tmp_path / f"{firmware}-qemu.log", "w")  # noqa: SIM115
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        started.append(process)
        return Vm(process, ssh_port, console, time.monotonic())

    try:
        yield boot
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=30)


def wait_for_ssh(vm: Vm, key: Path, command: str) -> tuple[subprocess.CompletedProcess, float]:
    """Retry ``command`` over SSH until it succeeds; return it and the seconds since power-on."""
    deadline = vm.started_at + BOOT_DEADLINE_S
    last = None
    while time.monotonic() < deadline:
        if vm.process.poll() is not None:
            pytest.fail(f"QEMU exited ({vm.process.returncode}):\n{vm.console_tail()}")
        try:
            last = ssh(vm.ssh_port, key, command)
        except subprocess.TimeoutExpired:
            continue
        if last.returncode == 0:
            return last, time.monotonic() - vm.started_at
        time.sleep(3)
    detail = last.stderr if last else "no attempt finished"
    pytest.fail(f"no SSH login within {BOOT_DEADLINE_S} s ({detail}):\n{vm.console_tail()}")


def guest_diagnostics(vm: Vm, key: Path) -> str:
    """The failed units and the ecosystem units' journal, for assertion messages."""
    try:
        done = ssh(
            vm.ssh_port,
            key,
            "systemctl --failed --no-legend; journalctl -b --no-pager -u 'scw-*' | tail -n 40",
        )
    except subprocess.TimeoutExpired:
        return "(the guest did not answer over SSH)"
    return done.stdout + done.stderr


@pytest.mark.vm
@pytest.mark.extra  # CI's twelve checks boot the ready image with UEFI through localcloud
@pytest.mark.timeout(VM_TEST_TIMEOUT_S)
@pytest.mark.parametrize("firmware", ["seabios", "ovmf"])
def test_ready_image_boots_and_uses_the_metadata(
    firmware: str, boot_vm, tmp_path: Path, record_property
) -> None:
    image = bootable_debian_image("ready")
    key, public_key = new_key(tmp_path, "metadata-key")
    tag_key, tag_public_key = new_key(tmp_path, "tag-key")
    hostname = f"fixture-{firmware}-{int(time.time()) % 100000}"
    metadata = Metadata(
        hostname=hostname,
        ssh_keys=[public_key],
        tags=["env_test", "AUTHORIZED_KEY=" + tag_public_key.replace(" ", "_")],
    )
    with MetadataServer(metadata) as server:
        vm = boot_vm(image, firmware, server.port)
        done, seconds_to_ssh = wait_for_ssh(
            vm,
            key,
            "cat /proc/sys/kernel/random/boot_id; hostname; "
            "resolvectl status || cat /etc/resolv.conf",
        )
        record_property(f"seconds_to_ssh_{firmware}", round(seconds_to_ssh, 1))
        print(f"{firmware}: SSH login {seconds_to_ssh:.1f} s after power-on")

        boot_id, guest_hostname, *resolver = done.stdout.splitlines()
        assert re.fullmatch(r"[0-9a-f-]{36}", boot_id)
        # The key may arrive before the hostname is set: poll the hostname for a while.
        deadline = time.monotonic() + 180
        while guest_hostname != hostname and time.monotonic() < deadline:
            time.sleep(3)
            guest_hostname = ssh(vm.ssh_port, key, "hostname").stdout.strip()
        assert guest_hostname == hostname, guest_diagnostics(vm, key)
        # systemd-resolved runs and took the DNS server from the DHCP lease.
        assert "169.0.0.3" in "\n".join(resolver)

        assert server.booted.wait(
            timeout=max(0, vm.started_at + BOOT_DEADLINE_S - time.monotonic())
        ), guest_diagnostics(vm, key)
        assert {"state_detail": "booted"} in metadata.states
        record_property(
            f"seconds_to_booted_{firmware}", round(metadata.booted_at - vm.started_at, 1)
        )
        print(f"{firmware}: PATCH /state booted {metadata.booted_at - vm.started_at:.1f} s")
        assert "GET /conf" in metadata.requests

        # The key from the AUTHORIZED_KEY tag works too.
        firmware_seen = ssh(
            vm.ssh_port, tag_key, "test -d /sys/firmware/efi && echo uefi || echo bios"
        )
        assert firmware_seen.returncode == 0, firmware_seen.stderr
        assert firmware_seen.stdout.strip() == ("uefi" if firmware == "ovmf" else "bios")

        checks = ssh(
            vm.ssh_port,
            key,
            "stat -c '%a %n' /root/.ssh /root/.ssh/authorized_keys; "
            "readlink /etc/resolv.conf; cat /etc/machine-id; findmnt -no FSTYPE /boot/efi; "
            "systemctl is-active systemd-networkd systemd-resolved ssh; "
            "ip -4 -o addr show dev eth1 | awk '{print $4}'; "
            "systemctl --failed --no-legend --plain",
        )
        assert checks.returncode == 0, checks.stderr
        lines = checks.stdout.splitlines()
        assert lines[:2] == ["700 /root/.ssh", "600 /root/.ssh/authorized_keys"]
        assert lines[2] == "../run/systemd/resolve/stub-resolv.conf"
        assert re.fullmatch(r"[0-9a-f]{32}", lines[3])  # filled in at first boot
        assert lines[4] == "vfat"
        assert lines[5:8] == ["active", "active", "active"]
        assert lines[8] == f"{PRIVATE_ADDRESS}/24", "the second NIC got no DHCP lease"
        assert lines[9:] == [], f"failed units: {lines[9:]}"


def test_ecosystem_package_is_deterministic(tmp_path: Path) -> None:
    first = ecosystem.build_ecosystem_deb(tmp_path / "a")
    second = ecosystem.build_ecosystem_deb(tmp_path / "b")
    assert first.name == "scaleway-ecosystem_0.1.0-1_all.deb"
    assert first.read_bytes() == second.read_bytes()
    fields = subprocess.run(
        ["dpkg-deb", "--field", str(first), "Package", "Architecture", "Depends"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "Architecture: all" in fields and "Depends: curl" in fields
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(first)], capture_output=True, text=True, check=True
    ).stdout
    for path in (
        "./usr/sbin/scw-fetch-ssh-keys",
        "./usr/lib/systemd/network/80-scw-ethernet.network",
        "./usr/lib/systemd/system/scw-signal-booted.service",
    ):
        assert path in listing
    assert re.search(r"-rwxr-xr-x root/root .* \./usr/sbin/scw-signal-state", listing)


def test_metadata_values_are_read_unquoted_and_never_evaluated(tmp_path: Path) -> None:
    metadata = Metadata(
        hostname="web-1",
        ssh_keys=["ssh-ed25519 AAAAC3Nz user@host", "it's $(touch pwned) `here`"],
        tags=["AUTHORIZED_KEY=ssh-ed25519_AAAAB"],
    )
    conf = tmp_path / "conf"
    conf.write_text(metadata.as_text())
    library = ecosystem.ROOT / "usr/lib/scaleway-ecosystem/metadata.sh"

    def value(key: str) -> str:
        done = subprocess.run(
            ["sh", "-c", '. "$0"; scw_value "$1" "$2"', str(library), str(conf), key],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
        return done.stdout.rstrip("\n") if done.returncode == 0 else f"<exit {done.returncode}>"

    assert value("HOSTNAME") == "web-1"
    assert value("SSH_PUBLIC_KEYS") == "2"
    assert value("SSH_PUBLIC_KEYS_0_KEY") == "ssh-ed25519 AAAAC3Nz user@host"
    assert value("SSH_PUBLIC_KEYS_1_KEY") == "it's $(touch pwned) `here`"
    assert value("TAGS_0") == "AUTHORIZED_KEY=ssh-ed25519_AAAAB"
    assert value("MISSING") == "<exit 1>"
    assert value("BAD;KEY") == "<exit 2>"
    assert not (tmp_path / "pwned").exists()


GPT_TYPES = {
    "1": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",  # Linux filesystem
    "14": "21686148-6449-6E6F-744E-656564454649",  # BIOS boot
    "15": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",  # EFI system partition
}


@pytest.mark.extra  # a property of the fixture images, not of the product
@pytest.mark.guestfs
@pytest.mark.timeout(VM_TEST_TIMEOUT_S)
def test_both_variants_are_never_booted_hybrid_cloud_images() -> None:
    """Both variants in one appliance (one launch under emulation instead of two): the base
    image is /dev/sda and the ready one /dev/sdb."""
    g = guestfs.GuestFS(python_return_dict=True)
    try:
        if not os.environ.get("LIBGUESTFS_BACKEND_SETTINGS"):
            g.set_backend_settings(["force_tcg"])  # KVM hangs or aborts on these hosts
        for variant in ("base", "ready"):
            g.add_drive_opts(str(bootable_debian_image(variant)), format="qcow2", readonly=True)
        g.launch()
        roots = {root[: -len("1")]: root for root in g.inspect_os()}
        assert set(roots) == {"/dev/sda", "/dev/sdb"}
        for disk, variant in (("/dev/sda", "base"), ("/dev/sdb", "ready")):
            _assert_never_booted_hybrid_image(g, disk, roots[disk], variant)
    finally:
        g.close()


def _assert_never_booted_hybrid_image(
    g: guestfs.GuestFS, disk: str, root: str, variant: str
) -> None:
    """The layout and first-boot state of one variant on `disk` (mounted, then unmounted)."""
    assert g.part_get_parttype(disk) == "gpt"
    layout = {str(p["part_num"]) for p in g.part_list(disk)}
    assert layout == set(GPT_TYPES)
    for number, gpt_type in GPT_TYPES.items():
        assert g.part_get_gpt_type(disk, int(number)).upper() == gpt_type
    assert g.vfs_type(f"{disk}1") == "ext4" and g.vfs_type(f"{disk}15") == "vfat"
    assert root == f"{disk}1"
    assert (g.inspect_get_distro(root), g.inspect_get_major_version(root)) == ("debian", 12)
    # Both variants carry the same filesystem UUIDs, so inspection may name either disk.
    mountpoints = g.inspect_get_mountpoints(root)
    assert {path: g.part_to_partnum(device) for path, device in mountpoints.items()} == {
        "/": 1,
        "/boot/efi": 15,
    }
    g.mount_ro(f"{disk}1", "/")
    g.mount_ro(f"{disk}15", "/boot/efi")
    try:
        fstab = g.cat("/etc/fstab")
        assert f"UUID={g.vfs_uuid(disk + '1')} / ext4" in fstab
        assert f"UUID={g.vfs_uuid(disk + '15')} /boot/efi vfat" in fstab
        assert g.is_file("/boot/efi/EFI/BOOT/BOOTX64.EFI")
        grub_cfg = g.cat("/boot/grub/grub.cfg")
        assert "console=ttyS0,115200" in grub_cfg and "set timeout=0" in grub_cfg
        assert g.filesize("/etc/machine-id") == 0
        assert g.glob_expand("/etc/ssh/ssh_host_*") == []
        assert g.readlink("/etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
        root_password = g.cat("/etc/shadow").splitlines()[0].split(":")[1]
        assert root_password in ("*", "!", "!*")
        assert g.ls("/usr/share/man") == []
        wants = "/etc/systemd/system/multi-user.target.wants"
        for unit in (
            f"{wants}/systemd-networkd.service",
            f"{wants}/ssh.service",
            "/etc/systemd/system/sysinit.target.wants/systemd-resolved.service",
            "/etc/systemd/system/ssh.service.wants/ssh-host-keys.service",
        ):
            assert g.is_symlink(unit), unit
        installed = "Package: scaleway-ecosystem\nStatus: install ok installed" in g.cat(
            "/var/lib/dpkg/status"
        )
        has_units = g.is_symlink(f"{wants}/scw-signal-booted.service")
        assert installed == has_units == (variant == "ready")
    finally:
        g.umount_all()


@pytest.mark.vm
@pytest.mark.extra  # a property of the fixture image, not of the product
@pytest.mark.guestfs
@pytest.mark.timeout(VM_TEST_TIMEOUT_S)
def test_boot_without_metadata_is_not_held_up(boot_vm, tmp_path: Path) -> None:
    """With 169.254.42.42 unreachable the ecosystem units fail fast and the boot completes."""
    key, public_key = new_key(tmp_path, "offline-key")
    # The metadata cannot deliver a key here, so one is written into an overlay offline.
    image = tmp_path / "with-key.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(bootable_debian_image("ready")),
         "-F", "qcow2", str(image)],
        check=True,
    )  # fmt: skip
    g = guestfs.GuestFS(python_return_dict=True)
    try:
        if not os.environ.get("LIBGUESTFS_BACKEND_SETTINGS"):
            g.set_backend_settings(["force_tcg"])
        g.add_drive_opts(str(image), format="qcow2", readonly=False)
        g.launch()
        g.mount("/dev/sda1", "/")
        g.mkdir_p("/root/.ssh")
        g.chmod(0o700, "/root/.ssh")
        g.write("/root/.ssh/authorized_keys", f"{public_key}\n".encode())
        g.chmod(0o600, "/root/.ssh/authorized_keys")
        g.umount_all()
        g.shutdown()
    finally:
        g.close()

    vm = boot_vm(image, "seabios", None)
    units = "scw-fetch-ssh-keys scw-set-hostname scw-signal-booted"
    query = (
        f"systemctl is-system-running --wait >/dev/null; systemctl is-failed {units}; hostname; "
        f"for u in {units}; do systemctl show -P ExecMainStartTimestampMonotonic $u; "
        "systemctl show -P ExecMainExitTimestampMonotonic $u; done; "
        "sed -n 's/.*offline-key.*/kept/p' /root/.ssh/authorized_keys"
    )
    done, seconds = wait_for_ssh(vm, key, query)
    print(f"without metadata: SSH login and boot finished {seconds:.1f} s after power-on")
    lines = done.stdout.split()
    assert lines[:3] == ["failed", "failed", "failed"], guest_diagnostics(vm, key)
    assert lines[3] == "localhost"
    stamps = [int(v) for v in lines[4:10]]
    durations = [(end - start) / 1e6 for start, end in zip(stamps[::2], stamps[1::2], strict=True)]
    print("seconds each unit took without metadata:", [round(d, 1) for d in durations])
    # curl gives up after about 30 s (--retry-max-time); the unit timeout is 60 s.
    assert all(0 < d < 45 for d in durations), durations
    # A failed fetch leaves authorized_keys as it was.
    assert lines[10:] == ["kept"]
