"""The rescue system (localcloud.machines.rescue): the build and its cache with real processes,
and a real QEMU boot that a customer would SSH into to repair a disk.

The VM test plays the metadata service itself (a small threaded HTTP server reached through a
slirp guestfwd at 169.254.42.42, as the QEMU backend does) and checks what Scaleway's rescue
mode promises: SSH as root with the server's keys, the disk attached and mountable, the
"booted" state signalled, and a clean poweroff on the ACPI power button.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from localcloud.machines import rescue

REPO = Path(__file__).resolve().parents[2]
BOOT_TIMEOUT = 600  # TCG on a shared 2-core machine: minutes, not seconds
POWEROFF_TIMEOUT = 180
PARTITION_START = 4096  # sectors: the ext4 root is partition 2, after a 1 MiB BIOS-boot one
PARTITION_MIB = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ssh_keypair(directory: Path, name: str) -> tuple[Path, str]:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(key)],
        check=True,
    )
    return key, key.with_suffix(".pub").read_text().strip()


# --- the metadata service ------------------------------------------------------------------


@dataclass
class Metadata:
    """What the fake metadata service serves and what it was told."""

    conf: str
    states: list[dict] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def _metadata_server(metadata: Metadata) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            metadata.requests.append(f"GET {self.path}")
            if self.path == "/":
                self._reply(200, b"conf\nstate\n")
            elif self.path == "/conf":
                self._reply(200, metadata.conf.encode())
            else:
                self._reply(404, b"not found\n")

        def do_PATCH(self) -> None:
            metadata.requests.append(f"PATCH {self.path}")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/state":
                self._reply(404, b"not found\n")
                return
            metadata.states.append(json.loads(body))
            self._reply(200, b"{}", "application/json")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- the disk --------------------------------------------------------------------------------


def _make_disk(directory: Path, token: str) -> Path:
    """A 64 MiB qcow2 disk like a server's root volume: GPT, partition 1 a 1 MiB BIOS-boot
    gap, partition 2 ext4 holding /etc/hostname and a known file. Built rootless:
    sfdisk on a plain file, mke2fs -d at the partition's offset, qemu-img convert."""
    raw = directory / "disk.raw"
    with raw.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    subprocess.run(
        ["sfdisk", "-q", str(raw)],
        input=f"label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\n"
        f"start={PARTITION_START}, size={PARTITION_MIB}MiB, type=linux\n",
        text=True,
        check=True,
    )
    content = directory / "rootfs"
    (content / "etc").mkdir(parents=True)
    (content / "etc" / "hostname").write_text("broken-server\n")
    (content / "known-file.txt").write_text(token + "\n")
    subprocess.run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "root",
            "-d",
            str(content),
            "-E",
            f"offset={PARTITION_START * 512}",
            str(raw),
            f"{PARTITION_MIB}M",
        ],
        check=True,
    )
    disk = directory / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(disk)], check=True
    )
    raw.unlink()
    return disk


def _read_from_disk(disk: Path, directory: Path, path: str) -> str:
    """A file of the ext4 partition of a qcow2 disk, read offline with debugfs."""
    raw = directory / "after.raw"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", str(disk), str(raw)], check=True
    )
    partition = directory / "after.ext4"
    subprocess.run(
        ["dd", f"if={raw}", f"of={partition}", f"skip={PARTITION_START}", "bs=512", "status=none"],
        check=True,
    )
    result = subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(partition)], capture_output=True, text=True, check=True
    )
    return result.stdout


# --- QEMU ------------------------------------------------------------------------------------


def _qmp(socket_path: Path, command: str) -> dict:
    """One QMP command over a fresh connection (greeting, capabilities, command)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(socket_path))
        stream = sock.makefile("rwb")
        json.loads(stream.readline())
        for execute in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": execute}).encode() + b"\n")
            stream.flush()
            while True:
                message = json.loads(stream.readline())
                if "return" in message or "error" in message:
                    break
        return message


@dataclass
class RescueVM:
    process: subprocess.Popen
    ssh_port: int
    key: Path
    console: Path
    qmp: Path

    def ssh(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.key),
                "-p",
                str(self.ssh_port),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=20",
                "-o",
                "LogLevel=ERROR",
                "root@127.0.0.1",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""


def _boot(kernel: Path, initrd: Path, disk: Path, key: Path, md_port: int, tmp: Path) -> RescueVM:
    ssh_port = _free_port()
    console, qmp = tmp / "console.log", tmp / "qmp.sock"
    netdev = (
        "user,id=n0,net=169.0.0.0/8,host=169.0.0.2,dns=169.0.0.3,dhcpstart=169.0.0.15,"
        f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22,"
        f"guestfwd=tcp:169.254.42.42:80-cmd:nc 127.0.0.1 {md_port}"
    )
    command = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        "512",
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        f"file:{console}",
        "-qmp",
        f"unix:{qmp},server=on,wait=off",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        "-append",
        "console=ttyS0 quiet",
        "-drive",
        f"file={disk},if=virtio,format=qcow2",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-netdev",
        netdev,
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return RescueVM(process, ssh_port, key, console, qmp)


@pytest.fixture
def metadata_service(tmp_path: Path) -> Iterator[tuple[Metadata, Path, int]]:
    """The metadata service with two keys: one as a project key, one as an AUTHORIZED_KEY tag
    that is also listed with the keys (as localcloud's and Scaleway's metadata do)."""
    key, public = _ssh_keypair(tmp_path, "customer")
    _, tag_public = _ssh_keypair(tmp_path, "tagged")
    conf = textwrap.dedent(
        f"""\
        ID=11111111-2222-3333-4444-555555555555
        NAME=broken-server
        HOSTNAME=broken-server
        COMMERCIAL_TYPE=DEV1-S
        SSH_PUBLIC_KEYS=2
        SSH_PUBLIC_KEYS_0_KEY='{public}'
        SSH_PUBLIC_KEYS_0_FINGERPRINT='256 MD5:00 customer (ssh-ed25519)'
        SSH_PUBLIC_KEYS_1_KEY='{tag_public}'
        TAGS=2
        TAGS_0=rescue-test
        TAGS_1='AUTHORIZED_KEY={tag_public.replace(" ", "_")}'
        """
    )
    metadata = Metadata(conf)
    server = _metadata_server(metadata)
    try:
        yield metadata, key, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# --- tests -----------------------------------------------------------------------------------


def _archive_listing(initramfs: Path) -> str:
    result = subprocess.run(
        f"zcat {initramfs} | cpio -itv --quiet", shell=True, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_build_is_cached_and_holds_what_the_rescue_system_needs(tmp_path: Path) -> None:
    kernel, initramfs = rescue.rescue_boot_files(tmp_path / "cache")
    built = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (kernel, initramfs)}
    assert rescue.rescue_boot_files(tmp_path / "cache") == (kernel, initramfs)
    # The second call found the cached files and made nothing again.
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in built} == built

    version, host_vmlinuz = rescue.host_kernel()
    assert kernel.read_bytes() == host_vmlinuz.read_bytes()
    listing = _archive_listing(initramfs)
    for expected in (
        "-rwxr-xr-x   1 root     root",  # owned by root
        " init\n",
        "usr/bin/busybox\n",
        "usr/sbin/dropbear\n",
        "usr/bin/sh -> /usr/bin/busybox",
        "usr/sbin/udhcpc -> /usr/bin/busybox",
        "usr/sbin/insmod -> /usr/bin/busybox",
        "bin -> usr/bin",
        f"usr/lib/modules/{version}/kernel/drivers/block/virtio_blk.ko",
        f"usr/lib/modules/{version}/kernel/fs/ext4/ext4.ko",
        "etc/scw-rescue",
    ):
        assert expected in listing, expected
    assert any(
        line.startswith("crw") and line.endswith(" dev/console") for line in listing.splitlines()
    )
    modules = json.loads((kernel.parent / "manifest.json").read_text())["modules"]
    # Dependencies before dependants: insmod fails on unresolved symbols otherwise.
    order = [Path(module).name for module in modules]
    assert order.index("virtio_ring.ko") < order.index("virtio_blk.ko")
    assert order.index("jbd2.ko") < order.index("ext4.ko") < order.index("vfat.ko")
    assert (
        order.index("failover.ko") < order.index("net_failover.ko") < order.index("virtio_net.ko")
    )


def test_concurrent_builds_produce_one_cache_entry(tmp_path: Path) -> None:
    """Two localcloud processes asking at once: one builds, the other waits and reuses it."""
    cache = tmp_path / "cache"
    code = "import sys; from localcloud.machines.rescue import rescue_boot_files as f; " + (
        "print(*f(), sep='\\n')"
    )
    env = {"LOCALCLOUD_RESCUE_CACHE": str(cache), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    builders = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [builder.communicate(timeout=300)[0] for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0]
    assert outputs[0] == outputs[1]
    assert [path.name for path in cache.iterdir() if not path.name.startswith(".")] == [
        Path(outputs[0].split()[0]).parent.name
    ]
    assert not [path for path in cache.iterdir() if path.name.startswith(".build-")]


@pytest.mark.extra  # the rescue check of the twelve proves it end to end
@pytest.mark.vm
def test_rescue_system_boots_with_ssh_and_the_disk(
    tmp_path: Path, metadata_service: tuple[Metadata, Path, int]
) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    metadata, key, md_port = metadata_service
    started = time.monotonic()
    kernel, initrd = rescue.rescue_boot_files(tmp_path / "rescue-cache")
    build_seconds = time.monotonic() - started
    token = f"known-{time.time_ns()}"
    disk = _make_disk(tmp_path, token)

    vm = _boot(kernel, initrd, disk, key, md_port, tmp_path)
    booted_at = time.monotonic()
    try:
        deadline = booted_at + BOOT_TIMEOUT
        result = None
        while time.monotonic() < deadline:
            assert vm.process.poll() is None, (
                f"QEMU exited: {vm.process.stdout.read().decode(errors='replace')}\n"
                f"{vm.console_text()}"
            )
            result = vm.ssh("cat /etc/scw-rescue", timeout=60)
            if result.returncode == 0:
                break
            time.sleep(3)
        assert result is not None and result.returncode == 0, (
            f"no SSH after {BOOT_TIMEOUT} s: {result and result.stderr}\n{vm.console_text()}"
        )
        ssh_seconds = time.monotonic() - booted_at
        print(f"rescue build: {build_seconds:.1f} s, boot to SSH: {ssh_seconds:.1f} s")
        assert result.stdout.strip() == "rescue"

        assert vm.ssh("hostname").stdout.strip() == "rescue"
        assert vm.ssh("wc -l < /root/.ssh/authorized_keys").stdout.strip() == "2"
        partitions = vm.ssh("cat /proc/partitions").stdout.split()
        assert {"vda", "vda1", "vda2"} <= set(partitions)
        repair = vm.ssh(
            "mount /dev/vda2 /mnt && cat /mnt/known-file.txt /mnt/etc/hostname"
            " && echo rescued > /mnt/etc/hostname && umount /mnt"
        )
        assert repair.returncode == 0, repair.stderr
        assert repair.stdout.split() == [token, "broken-server"]

        # The key given as an AUTHORIZED_KEY tag works too.
        vm.key = tmp_path / "tagged"
        assert vm.ssh("true").returncode == 0

        # Signalled once SSH listens, so it may land just after the first login.
        signal_deadline = time.monotonic() + 120
        while not metadata.states and time.monotonic() < signal_deadline:
            time.sleep(1)
        assert metadata.states == [{"state_detail": "booted"}], metadata.requests
        assert "GET /conf" in metadata.requests

        # The ACPI power button (what a graceful stop sends) powers the rescue system off.
        assert _qmp(vm.qmp, "system_powerdown") == {"return": {}}
        vm.process.wait(timeout=POWEROFF_TIMEOUT)
    finally:
        if vm.process.poll() is None:
            vm.process.kill()
            vm.process.wait(timeout=30)
    assert _read_from_disk(disk, tmp_path, "/etc/hostname") == "rescued\n"
