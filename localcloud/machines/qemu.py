"""The QEMU machine backend (`LOCALCLOUD_MACHINES=qemu`): every server is a real VM.

What a server is made of, all under the state directory:
- disks: a local (l_ssd) volume is `volumes/<volume id>.qcow2`, a copy-on-write overlay on the
  blob of its base snapshot (`blobs/<snapshot id>.qcow2`, or a Block snapshot's `_blob`),
  made at first boot and sized to the volume; it keeps its data across poweroff/poweron and
  goes with the volume record. An SBS volume is `block/<volume id>.qcow2` (an overlay on its
  Block snapshot, or an empty image of its size). Snapshots of local volumes are standalone
  QCOW2 blobs: `qemu-img convert` of the overlay chain when no VM has the disk open (cold),
  a QMP `blockdev-backup` (sync full) of the running disk otherwise (hot, crash-consistent);
  the snapshot becomes `available` when the copy is complete;
- the VM: `qemu-system-x86_64` on machine type `pc` (ACPI hot-plug on pci.0), TCG unless KVM
  works (probed once, with a timeout: it hangs on some hosts), SeaBIOS, or OVMF with a
  per-server copy of the variables when the server or its image is tagged `uefi` or
  `boot_mode=uefi`. Serial console in `machines/<server id>/console.log`, QMP on a unix socket
  under a short runtime directory (socket paths are limited to 107 bytes);
- the network: NIC 0 is slirp on 169.0.0.0/8 (the guest leases 169.0.0.15) whose guestfwd
  relays 169.254.42.42:80 to the metadata service (localcloud.metadata) through
  `nc -s <address>`, a loopback source address unique to the VM that the service maps back
  to the server. Each public IPv4 of a server is a loopback address of its own (127.x.y.z),
  and the TCP ports its security group lets in are forwarded from `<address>:<port>` to the
  guest (`hostfwd_add`/`hostfwd_remove` at run time; a port that cannot be bound is
  forwarded from a free one, which `endpoint()` names). Private NICs are extra virtio NICs
  on the private network's user-space switch (localcloud.networks.Segment);
- security groups: the forwarded ports are a watched set (22, 80, 443 and every port named
  by an inbound TCP rule, at most 64 per range, remembered for the server's life) filtered
  by the inbound rules (first match by position, else the inbound default policy). All
  inbound traffic comes from the host, so every IPv4 `ip_range` matches it and IPv6 ranges
  never do. Outbound rules are not enforced: the guest reaches whatever the host reaches.

Power: poweron launches QEMU (state `running` once it runs; `state_detail` becomes "booted"
when the guest says so through the metadata service), after waiting in `starting` while the
host has as many guests booting as it has CPUs (`boots`); poweroff is an ACPI power button
press, then a kill after LOCALCLOUD_POWEROFF_TIMEOUT; stop_in_place stops the vCPUs and
poweron continues them; reboot is `system_reset` under KVM and a new QEMU under TCG (see
`_op_reboot`); terminate quits QEMU.

Transitions run in one worker thread per server, in the order the API asked for them: the
API thread only changes the record's state to the transitional one and queues the work, so no
API call waits for QEMU. The worker writes the record under the cloud's lock (the one every
Instance handler holds for its read-modify-write). A terminated server gets a due `{_gone}`
transition, so the Instance API's `settle` releases it as with the timer backend.

No VM outlives its server: QEMU runs under `setpriv --pdeathsig KILL` from one long-lived
launcher thread (the death signal follows the thread that forked), leftover QEMUs of this
state directory (pidfiles, command lines) are killed at start-up, and `shutdown()`, `reset()`
and server deletion quit the VMs.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import ipaddress
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud import qcow2
from localcloud.machines import GONE
from localcloud.machines.boots import BootGate
from localcloud.machines.qmp import QMPClient, QMPClosed, QMPError
from localcloud.machines.timer import TimerBackend
from localcloud.metadata import MetadataService
from localcloud.store import Store

log = logging.getLogger("localcloud.qemu")

# Store kinds read here (owned by the Instance, Block, VPC and IPAM modules).
SERVER = "instance_server"
VOLUME = "instance_volume"
SNAPSHOT = "instance_snapshot"
IMAGE = "instance_image"
IP = "instance_ip"
SECURITY_GROUP = "instance_security_group"
RULE = "instance_security_group_rule"
PRIVATE_NIC = "instance_private_nic"
BLOCK_VOLUME = "block_volume"
BLOCK_SNAPSHOT = "block_snapshot"
PRIVATE_NETWORK = "vpc_private_network"
IPAM_IP = "ipam_ip"

QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")

SLIRP_NET = "169.0.0.0/8"
SLIRP_HOST = "169.0.0.2"
SLIRP_DNS = "169.0.0.3"
GUEST_IPV4 = "169.0.0.15"
METADATA_IP = "169.254.42.42"
SOURCE_NET = (127, 254)  # the VMs' metadata source addresses: 127.254.x.y

WATCHED_PORTS = (22, 80, 443)
RANGE_CAP = 64
TICK = 2.0  # seconds between a worker's checks of its VM (exit, forwards, devices)
LIFECYCLE = ("start", "power_off", "stop_in_place", "reboot", "terminate")
UEFI_TAGS = ("uefi", "boot_mode=uefi")


# --- settings ---------------------------------------------------------------------------------


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


@dataclass
class Settings:
    """From the environment: LOCALCLOUD_VM_MEMORY_MB (768), LOCALCLOUD_VM_CPUS (1),
    LOCALCLOUD_ACCEL (tcg, kvm, or empty: probe), LOCALCLOUD_POWEROFF_TIMEOUT (60 s)."""

    memory_mb: int = field(default_factory=lambda: int(_env_number("LOCALCLOUD_VM_MEMORY_MB", 768)))
    cpus: int = field(default_factory=lambda: int(_env_number("LOCALCLOUD_VM_CPUS", 1)))
    accel: str = field(default_factory=lambda: os.environ.get("LOCALCLOUD_ACCEL", "").lower())
    poweroff_timeout: float = field(
        default_factory=lambda: _env_number("LOCALCLOUD_POWEROFF_TIMEOUT", 60.0)
    )


_accel_lock = threading.Lock()
_accel_found: str | None = None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(timeout: float = 10.0) -> bool:
    """Does KVM run guest code here? Boot the host kernel without a root filesystem under
    KVM: it panics (and QEMU exits, `-no-reboot`) within a second or two when KVM works; on
    hosts where KVM hangs nothing comes out and the probe is killed after `timeout`."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if kernels:
        boot = ["-kernel", kernels[-1], "-append", "console=ttyS0 panic=-1", "-serial", "stdio"]
        wanted = b"Kernel panic"
    else:  # no kernel to boot: SeaBIOS getting to its boot menu is guest code too
        boot = ["-chardev", "stdio,id=dbg", "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]
        wanted = b"Booting from"
    argv = [QEMU, "-accel", "kvm", "-cpu", "host", "-machine", "pc", "-m", "256"]
    argv += ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", *boot]
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError:
        return False
    output = bytearray()
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: output.extend(stdout.read()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and wanted not in output and proc.poll() is None:
        time.sleep(0.2)
    works = wanted in output
    proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    return works


def accelerator(settings: Settings) -> list[str]:
    """QEMU's accelerator and CPU options: forced by LOCALCLOUD_ACCEL, else KVM if the probe
    succeeds (remembered per host boot in the temp directory), else TCG."""
    global _accel_found
    choice = settings.accel
    if choice not in ("kvm", "tcg"):
        with _accel_lock:
            if _accel_found is None:
                cache = Path(tempfile.gettempdir()) / f"localcloud-accel-{_boot_id()}"
                try:
                    _accel_found = cache.read_text().strip()
                except OSError:
                    _accel_found = "kvm" if probe_kvm() else "tcg"
                    log.info("accelerator: %s (KVM probe)", _accel_found)
                    with contextlib.suppress(OSError):
                        cache.write_text(_accel_found)
            choice = _accel_found
    if choice == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "max"]


# --- files ------------------------------------------------------------------------------------


class Layout:
    """Where the backend keeps things: per-server files, disks, and a short runtime dir."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.machines = self.state_dir / "machines"
        self.volumes = self.state_dir / "volumes"
        self.block = self.state_dir / "block"
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        self.runtime = Path(tempfile.gettempdir()) / f"localcloud-{digest}"
        for folder in (self.machines, self.volumes, self.block, self.runtime):
            folder.mkdir(parents=True, exist_ok=True)

    def machine(self, server_id: str) -> Path:
        return self.machines / server_id

    def qmp_socket(self, server_id: str) -> Path:
        return self.runtime / f"{server_id[:18]}.qmp"

    def segment_socket(self, network_id: str) -> Path:
        return self.runtime / f"pn-{network_id[:18]}.sock"


def failure_detail(exc: BaseException) -> str:
    """A server's state_detail after a failed start: "boot failed: " and the first line of
    the cause, bounded (it is shown to every API client)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = lines[0] if lines else type(exc).__name__
    return f"boot failed: {cause}"[:250]


def _opt(value: object) -> str:
    """A value inside a QEMU `-opt key=value,...` list: commas are doubled."""
    return str(value).replace(",", ",,")


def virtual_size(path: Path) -> int:
    with open(path, "rb") as handle:
        return qcow2.parse_header(handle.read(512)).virtual_size


def backing_file(path: Path) -> str | None:
    """The backing file name recorded in a QCOW2 header (None for a standalone image)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(65536)
        header = qcow2.parse_header(data)
    except (OSError, qcow2.Qcow2Error):
        return None
    if not header.backing_file_offset:
        return None
    start = header.backing_file_offset
    return data[start : start + header.backing_file_size].decode(errors="replace")


def _qemu_img(*args: str, timeout: float = 3600) -> None:
    done = subprocess.run(
        [QEMU_IMG, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"qemu-img {args[0]} failed: {done.stderr.strip()[-500:]}")


def ensure_disk(path: Path, base: Path | None, size: int) -> None:
    """The disk of a volume: an overlay on `base` (or an empty image) of at least `size`
    bytes, made when missing; grown when the volume grew while no VM had it open."""
    size = max(int(size or 0), 1 << 20)
    if path.exists():
        if virtual_size(path) < size:
            _qemu_img("resize", "-q", "-f", "qcow2", str(path), str(size))
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    if base is not None:
        # qemu-img records the backing file as given and resolves a relative one from the
        # overlay's folder: always hand it an absolute path.
        base = Path(base).resolve()
        size = max(size, virtual_size(base))
        _qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(partial))
        if virtual_size(partial) < size:
            _qemu_img("resize", "-q", "-f", "qcow2", str(partial), str(size))
    else:
        _qemu_img("create", "-q", "-f", "qcow2", str(partial), str(size))
    partial.replace(path)


def copy_disk(source: Path | None, target: Path, size: int, force_share: bool = False) -> None:
    """A standalone QCOW2 copy of `source` (its whole backing chain) at `target`; an empty
    image of `size` when there is no source."""
    partial = Path(target).resolve().with_name(target.name + ".part")
    if source is None or not source.exists():
        _qemu_img("create", "-q", "-f", "qcow2", str(partial), str(max(size, 1 << 20)))
    else:
        share = ["-U"] if force_share else []
        _qemu_img("convert", *share, "-O", "qcow2", str(Path(source).resolve()), str(partial))
    partial.replace(target)


# --- orphans and the launcher -----------------------------------------------------------------


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def leftover_qemus(layout: Layout) -> list[int]:
    """QEMU processes started for this state directory (pidfiles, then command lines)."""
    marker = str(layout.machines).encode()
    pids: set[int] = set()
    for pidfile in layout.machines.glob("*/qemu.pid"):
        with contextlib.suppress(OSError, ValueError):
            pids.add(int(pidfile.read_text().strip()))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pids.add(int(entry.name))
    found = []
    for pid in sorted(pids):
        cmdline = _cmdline(pid)
        if pid != os.getpid() and b"qemu-system" in cmdline and marker in cmdline:
            found.append(pid)
    return found


def reap_leftovers(layout: Layout) -> list[int]:
    """Kill QEMUs that a crashed localcloud left behind on this state directory."""
    pids = leftover_qemus(layout)
    for pid in pids:
        log.warning("killing QEMU %s left over from a previous run", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists() and b"qemu" in _cmdline(p)]
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pidfile in layout.machines.glob("*/qemu.pid"):
        pidfile.unlink(missing_ok=True)
    return pids


class Launcher:
    """Starts every QEMU from one thread that lives as long as the process: the parent-death
    signal set by `setpriv --pdeathsig` fires when the *thread* that forked exits."""

    def __init__(self) -> None:
        self.requests: queue.Queue[
            tuple[list[str], dict[str, Any], queue.Queue[subprocess.Popen[bytes] | Exception]]
        ] = queue.Queue()
        self.prefix = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        self.thread = threading.Thread(target=self._run, daemon=True, name="qemu-launcher")
        self.thread.start()

    def _run(self) -> None:
        while True:
            argv, kwargs, answer = self.requests.get()
            try:
                answer.put(subprocess.Popen([*self.prefix, *argv], **kwargs))
            except Exception as exc:  # the caller re-raises it
                answer.put(exc)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        answer: queue.Queue[subprocess.Popen[bytes] | Exception] = queue.Queue()
        self.requests.put((argv, kwargs, answer))
        result = answer.get()
        if isinstance(result, Exception):
            raise result
        return result


# --- security groups --------------------------------------------------------------------------


def _ipv4_range(ip_range: str | None) -> bool:
    try:
        return ipaddress.ip_network(ip_range or "0.0.0.0/0", strict=False).version == 4
    except ValueError:
        return False


def _port_span(rule: dict[str, Any]) -> tuple[int, int] | None:
    low = rule.get("dest_port_from")
    if not low:
        return None  # every port
    return int(low), int(rule.get("dest_port_to") or low)


def rule_ports(rules: list[dict[str, Any]]) -> set[int]:
    """The ports inbound TCP rules name (a range counts for its first RANGE_CAP ports)."""
    ports: set[int] = set()
    for rule in rules:
        if rule.get("direction") != "inbound" or rule.get("protocol") != "TCP":
            continue
        span = _port_span(rule)
        if span and _ipv4_range(rule.get("ip_range")):
            ports.update(range(span[0], min(span[1], span[0] + RANGE_CAP - 1) + 1))
    return ports


def allowed_ports(
    group: dict[str, Any] | None, rules: list[dict[str, Any]], remembered: Iterable[int] = ()
) -> list[int]:
    """The forwarded TCP ports: the watched set (22, 80, 443, the ports the rules name and
    the `remembered` ones a rule once named) filtered by the group's inbound rules."""
    inbound = sorted(
        (
            r
            for r in rules
            if r.get("direction") == "inbound"
            and r.get("protocol") in ("TCP", "ANY")
            and _ipv4_range(r.get("ip_range"))
        ),
        key=lambda r: r.get("position") or 0,
    )
    watched = set(WATCHED_PORTS) | rule_ports(inbound) | set(remembered)
    default = (group or {}).get("inbound_default_policy") or "accept"
    allowed = []
    for port in sorted(p for p in watched if 0 < p < 65536):
        action = default
        for rule in inbound:
            span = _port_span(rule)
            if span is None or span[0] <= port <= span[1]:
                action = rule.get("action") or "accept"
                break
        if action == "accept":
            allowed.append(port)
    return allowed


# --- what a server's VM is made of ------------------------------------------------------------


@dataclass
class Disk:
    """A volume as a virtio disk; QEMU names derive from the volume id (31 characters at
    most), and the serial lets the guest find it under /dev/disk/by-id/virtio-<serial>."""

    volume_id: str
    kind: str  # "l_ssd" or "sbs"
    path: Path
    base: Path | None
    size: int
    boot: bool = False

    @property
    def node(self) -> str:
        return "d" + self.volume_id.replace("-", "")[:24]

    @property
    def device(self) -> str:
        return "vd-" + self.volume_id.replace("-", "")[:24]

    @property
    def serial(self) -> str:
        return self.volume_id.replace("-", "")[:20]


@dataclass
class Nic:
    """A private NIC as a virtio NIC on its network's segment, with the NIC's MAC (which
    the segment's DHCP looks up)."""

    nic_id: str
    mac: str
    network_id: str

    @property
    def netdev(self) -> str:
        return "p" + self.nic_id.replace("-", "")[:24]

    @property
    def device(self) -> str:
        return "pn-" + self.nic_id.replace("-", "")[:24]


@dataclass
class Plan:
    """A server's VM as its records describe it now."""

    server: dict[str, Any]
    disks: list[Disk]
    nics: list[Nic]
    forwards: set[tuple[str, int]]
    config: dict[str, Any]  # what needs a relaunch to change: boot type and firmware


# --- one VM -----------------------------------------------------------------------------------


class Machine:
    """The VM of one server and the worker thread that runs its transitions in order."""

    def __init__(self, backend: QemuBackend, server_id: str) -> None:
        self.backend = backend
        self.id = server_id
        self.dir = backend.layout.machine(server_id)
        self.ops: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue()
        self.lifecycle_queued = 0  # changed under the cloud's lock
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp: QMPClient | None = None
        self.config: dict[str, Any] | None = None
        self.accel_args: list[str] = []
        self.paused = False
        self.detail_before_pause = ""
        self.source_address = backend.source_address(server_id)
        self.forwards: dict[tuple[str, int], int] = {}  # (address, guest port) -> host port
        self.forwards_shown: dict[tuple[str, int], int] = {}  # while a reboot relaunches
        self.chosen_ports: dict[tuple[str, int], int] = {}  # kept for the server's life
        self.disks: dict[str, Disk] = {}  # plugged in the running VM, by volume id
        self.nics: dict[str, Nic] = {}
        self.unplugging: dict[str, tuple[str, int, Callable[[], None]]] = {}
        self.retry_at: dict[str, float] = {}
        self.halted = False
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"vm-{server_id[:8]}")
        self.thread.start()

    # --- the queue ------------------------------------------------------------------------

    def submit(self, op: str, *args: Any) -> None:
        if op in LIFECYCLE:
            self.lifecycle_queued += 1
        self.ops.put((op, args))

    def _run(self) -> None:
        while True:
            try:
                op, args = self.ops.get(timeout=TICK)
            except queue.Empty:
                op, args = "tick", ()
            if op == "exit" or self.halted:
                return
            if op in LIFECYCLE:
                with self.backend.cloud.lock:
                    self.lifecycle_queued -= 1
            try:
                getattr(self, f"_op_{op}")(*args)
            except Exception as exc:
                log.exception("server %s: %s failed: %s", self.id, op, exc)
                if op == "start" or op == "reboot":
                    # As on Scaleway, a start that fails puts the server back to stopped; its
                    # state_detail says why, so a client sees the failure at its next read.
                    self._kill()
                    self._settle("stopped", failure_detail(exc))
            if op == "destroy":
                return

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.qmp is not None

    @property
    def monitor(self) -> QMPClient:
        """The QMP connection of the running QEMU."""
        if self.qmp is None:
            raise AttributeError(f"server {self.id}: no QEMU monitor")
        return self.qmp

    def _settle(self, state: str, detail: str) -> None:
        """The end state of a transition, unless a later transition is already queued."""
        self.backend.patch_server(self.id, {"state": state, "state_detail": detail}, self)

    def _progress(self, state: str, detail: str) -> None:
        """A step within a transition; also skipped when a later one is queued, so the
        record does not show "starting" while the API already accepted a stop."""
        self.backend.patch_server(self.id, {"state": state, "state_detail": detail}, self)

    # --- transitions ----------------------------------------------------------------------

    def _op_start(self) -> None:
        if self.running():  # poweron of a server stopped in place
            if self.paused:
                self.monitor.execute("cont")
                self.paused = False
            self._settle("running", self.detail_before_pause or "booting kernel")
            return
        self._kill()
        if not self._wait_for_boot_place():
            return
        self._progress("starting", "provisioning node")
        plan = self.backend.plan(self.id)
        if plan is None:
            return
        self._launch(plan)
        self._settle("running", "booting kernel")

    def _wait_for_boot_place(self) -> bool:
        """Wait while the host has as many guests booting as it can take (see `boots`);
        False when a later transition (a stop, a delete) was asked meanwhile."""
        gate = self.backend.boots
        if not gate.booting(self.id):
            self._progress("starting", "allocating node")
        return gate.enter(self.id, give_up=lambda: self.halted or self.lifecycle_queued > 0)

    def _op_power_off(self) -> None:
        if self.running():
            if self.paused:
                self.monitor.execute("cont")
                self.paused = False
            with contextlib.suppress(QMPError, QMPClosed, TimeoutError):
                self.monitor.execute("system_powerdown")
            assert self.proc is not None  # running()
            try:
                self.proc.wait(timeout=self.backend.settings.poweroff_timeout)
            except subprocess.TimeoutExpired:
                log.info("server %s: no ACPI shutdown in time, stopping the VM", self.id)
        self._kill()
        self._settle("stopped", "")

    def _op_stop_in_place(self) -> None:
        if self.running():
            server = self.backend.read(SERVER, self.id) or {}
            self.detail_before_pause = server.get("state_detail") or ""
            if self.detail_before_pause in ("stopping in place", "stopped in place"):
                self.detail_before_pause = "booted"
            self.monitor.execute("stop")
            self.paused = True
        self._settle("stopped in place", "stopped in place")

    def _op_reboot(self) -> None:
        plan = self.backend.plan(self.id)
        if plan is None:
            return
        self._progress("starting", "rebooting")
        if self.running() and plan.config == self.config and self.accel_args[1] == "kvm":
            self.monitor.execute("system_reset")
            if self.paused:
                self.monitor.execute("cont")
                self.paused = False
        else:
            # A new boot type or firmware takes a new QEMU. So does any reboot under TCG:
            # after `system_reset` the next boot writes over pages that still hold code
            # translated during the previous one, and TCG's self-modifying code handling
            # makes it ~1.5x slower (the Debian test image, back to back on one host: 72 s
            # to the login prompt in a fresh QEMU, 106 s after a reset). To the guest both
            # are the same hard reset. The endpoints keep answering meanwhile (the new QEMU
            # forwards the same ports), as a server keeps its public IP while it reboots.
            shown = dict(self.forwards)
            self._kill()
            self.forwards_shown = shown
            try:
                if not self._wait_for_boot_place():
                    return
                self._launch(plan)
            finally:
                self.forwards_shown = {}
        self._settle("running", "booting kernel")

    def _op_terminate(self) -> None:
        self._kill()
        self.backend.mark_gone(self.id)

    def _op_destroy(self, volume_ids: list[str]) -> None:
        self._kill()
        self.backend.forget(self)
        shutil.rmtree(self.dir, ignore_errors=True)
        for volume_id in volume_ids:
            self.backend.volume_deleted(volume_id)

    def _op_tick(self) -> None:
        if self.proc is None:
            return
        if self.backend.boots.booting(self.id):
            server = self.backend.read(SERVER, self.id) or {}
            if server.get("state_detail") == "booted":
                self.backend.boots.leave(self.id)
        if self.proc.poll() is not None:  # the guest powered itself off, or QEMU died
            log.info("server %s: QEMU exited (%s)", self.id, self.proc.returncode)
            self._kill()
            server = self.backend.read(SERVER, self.id) or {}
            if server.get("state") in ("running", "starting", "stopped in place"):
                self._settle("stopped", "")
            return
        self._op_reconcile()

    def _op_reconcile(self) -> None:
        if not self.running():
            return
        plan = self.backend.plan(self.id)
        if plan is None:
            return
        self._apply_forwards(plan.forwards)
        self._finish_unplugs()
        if self.paused:
            return  # the guest cannot answer hot-plug requests while its CPUs are stopped
        wanted_disks = {d.volume_id: d for d in plan.disks if not d.boot}
        for volume_id, disk in list(self.disks.items()):
            if not disk.boot and volume_id not in wanted_disks and volume_id not in self.unplugging:
                self._attempt(volume_id, self._unplug_disk, disk)
        for volume_id, disk in wanted_disks.items():
            if volume_id not in self.disks:
                self._attempt(volume_id, self._plug_disk, disk)
        wanted_nics = {n.nic_id: n for n in plan.nics}
        for nic_id, nic in list(self.nics.items()):
            if nic_id not in wanted_nics and nic_id not in self.unplugging:
                self._attempt(nic_id, self._unplug_nic, nic)
        for nic_id, nic in wanted_nics.items():
            if nic_id not in self.nics:
                self._attempt(nic_id, self._plug_nic, nic)

    def _attempt(self, key: str, action: Callable[[Any], None], item: Any) -> None:
        """One hot-plug step; after a failure the same step waits a while before a retry
        (a disk still open in another VM, say), instead of failing at every tick."""
        if self.retry_at.get(key, 0) > time.monotonic():
            return
        try:
            action(item)
            self.retry_at.pop(key, None)
        except (QMPError, RuntimeError, OSError, TimeoutError) as exc:
            log.warning("server %s: %s of %s failed: %s", self.id, action.__name__, key, exc)
            self.retry_at[key] = time.monotonic() + 30

    def _op_capture(self, snapshot_id: str, volume_id: str, then: dict[str, Any]) -> None:
        self.backend.capture_now(snapshot_id, volume_id, then, self)

    # --- launching and stopping QEMU -------------------------------------------------------

    def _argv(self, plan: Plan) -> list[str]:
        backend = self.backend
        server = plan.server
        settings = backend.settings
        self.accel_args = accelerator(settings)
        socket_path = backend.layout.qmp_socket(self.id)
        hostname = "".join(c for c in (server.get("hostname") or "") if c.isalnum() or c in "-.")
        argv = [
            QEMU,
            "-name",
            f"localcloud-{self.id}",
            "-machine",
            "pc",
            *self.accel_args,
            "-smp",
            str(settings.cpus),
            "-m",
            str(settings.memory_mb),
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-chardev",
            f"file,id=serial0,path={_opt(self.dir / 'console.log')},append=on",
            "-serial",
            "chardev:serial0",
            "-qmp",
            f"unix:{_opt(socket_path)},server=on,wait=off",
            "-pidfile",
            str(self.dir / "qemu.pid"),
            "-uuid",
            self.id,
            "-smbios",
            f"type=1,manufacturer=Scaleway,product={_opt(server['commercial_type'])},"
            f"serial={self.id}",
            "-device",
            "virtio-rng-pci",
        ]
        if plan.config["uefi"]:
            variables = self.dir / "OVMF_VARS.fd"
            if not variables.exists():
                shutil.copyfile(OVMF_VARS, variables)
            argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={_opt(OVMF_CODE)}"]
            argv += ["-drive", f"if=pflash,format=raw,unit=1,file={_opt(variables)}"]
        if plan.config["boot_type"] == "rescue":
            from localcloud.machines.rescue import rescue_boot_files

            kernel, initramfs = rescue_boot_files()
            argv += ["-kernel", str(kernel), "-initrd", str(initramfs)]
            argv += ["-append", "console=ttyS0 scaleway rescue"]
        for disk in plan.disks:
            argv += [
                "-blockdev",
                f"driver=qcow2,node-name={disk.node},file.driver=file,"
                f"file.filename={_opt(disk.path)}",
                "-device",
                f"virtio-blk-pci,drive={disk.node},id={disk.device},serial={disk.serial}"
                + (",bootindex=1" if disk.boot else ""),
            ]
        relay = f"nc -s {self.source_address} 127.0.0.1 {backend.metadata.port}"
        slirp = (
            f"user,id=n0,net={SLIRP_NET},host={SLIRP_HOST},dns={SLIRP_DNS},"
            f"dhcpstart={GUEST_IPV4},guestfwd=tcp:{METADATA_IP}:80-cmd:{relay}"
        )
        if hostname:
            slirp += f",hostname={hostname}"
        argv += [
            "-netdev",
            slirp,
            "-device",
            f"virtio-net-pci,netdev=n0,id=nic0,mac={server['mac_address']}",
        ]
        for nic in plan.nics:
            segment = backend.segment(nic.network_id)
            argv += ["-netdev", segment.qemu_netdev(nic.netdev)]
            argv += ["-device", f"virtio-net-pci,netdev={nic.netdev},id={nic.device},mac={nic.mac}"]
        return argv

    def _launch(self, plan: Plan) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for disk in plan.disks:
            ensure_disk(disk.path, disk.base, disk.size)
        argv = self._argv(plan)
        socket_path = self.backend.layout.qmp_socket(self.id)
        socket_path.unlink(missing_ok=True)
        with open(self.dir / "qemu.log", "ab") as output:
            output.write(f"--- {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
            output.flush()
            self.proc = self.backend.launcher.popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                # What QEMU said after the command line this launch wrote.
                said = (self.dir / "qemu.log").read_text(errors="replace").rsplit("\n--- ", 1)
                lines = [line for line in said[-1].splitlines()[1:] if line.strip()]
                self.proc = None
                raise RuntimeError(
                    "QEMU exited at start: " + (" / ".join(lines[-3:])[-500:] or "no message")
                )
            if socket_path.exists():
                try:
                    self.qmp = QMPClient(socket_path)
                    break
                except (OSError, QMPClosed):
                    pass
            if time.monotonic() - started > 60:
                raise RuntimeError("QEMU's QMP socket did not answer within 60 s")
            time.sleep(0.1)
        self.config = dict(plan.config)
        self.paused = False
        self.detail_before_pause = ""
        self.disks = {d.volume_id: d for d in plan.disks}
        self.nics = {n.nic_id: n for n in plan.nics}
        self._apply_forwards(plan.forwards)
        log.info("server %s: QEMU %s started", self.id, self.proc.pid)

    def _kill(self) -> None:
        """Stop QEMU now (quit, then SIGKILL) and forget what ran in it."""
        if self.proc is not None and self.proc.poll() is None:
            if self.qmp is not None:
                with contextlib.suppress(QMPError, QMPClosed, TimeoutError, OSError):
                    self.qmp.execute("quit", timeout=5)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        if self.qmp is not None:
            self.qmp.close()
        had_vm = self.proc is not None
        self.backend.boots.leave(self.id)
        self.proc = None
        self.qmp = None
        self.config = None
        self.paused = False
        self.forwards.clear()
        self.disks.clear()
        self.nics.clear()
        self.unplugging.clear()
        self.retry_at.clear()
        self.backend.layout.qmp_socket(self.id).unlink(missing_ok=True)
        (self.dir / "qemu.pid").unlink(missing_ok=True)
        if had_vm:
            self.backend.release_segments()

    def halt(self) -> None:
        """Stop the VM and the worker from another thread (shutdown, reset)."""
        self.halted = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.ops.put(("exit", ()))
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=15)
        self._kill()

    # --- forwarded ports ------------------------------------------------------------------

    def _apply_forwards(self, wanted: set[tuple[str, int]]) -> None:
        for key, host_port in list(self.forwards.items()):
            if key not in wanted:
                self.monitor.hmp(f"hostfwd_remove n0 tcp:{key[0]}:{host_port}")
                del self.forwards[key]
        for key in sorted(wanted - set(self.forwards)):
            address, port = key
            candidates: list[int | None] = [self.chosen_ports.get(key, port)]
            candidates += [_free_port(address) for _ in range(3)]
            for candidate in candidates:
                if candidate is None:
                    continue
                error = self.monitor.hmp(f"hostfwd_add n0 tcp:{address}:{candidate}-:{port}")
                if not error.strip():
                    self.forwards[key] = self.chosen_ports[key] = candidate
                    break
            else:
                log.warning("server %s: cannot forward %s:%s", self.id, address, port)

    def endpoint(self, port: int, addresses: list[str]) -> dict[str, Any] | None:
        forwards = dict(self.forwards_shown or self.forwards)
        for address in addresses:
            if (address, port) in forwards:
                return {"host": address, "port": forwards[(address, port)]}
        for (address, guest_port), host_port in forwards.items():
            if guest_port == port:
                return {"host": address, "port": host_port}
        return None

    # --- hot-plug -------------------------------------------------------------------------

    def _plug_disk(self, disk: Disk) -> None:
        ensure_disk(disk.path, disk.base, disk.size)
        self.monitor.execute(
            "blockdev-add",
            {
                "driver": "qcow2",
                "node-name": disk.node,
                "file": {"driver": "file", "filename": str(disk.path)},
            },
        )
        try:
            self.monitor.execute(
                "device_add",
                {
                    "driver": "virtio-blk-pci",
                    "drive": disk.node,
                    "id": disk.device,
                    "serial": disk.serial,
                },
            )
        except QMPError:
            self.monitor.execute("blockdev-del", {"node-name": disk.node})
            raise
        self.disks[disk.volume_id] = disk
        log.info("server %s: volume %s plugged", self.id, disk.volume_id)

    def _unplug_disk(self, disk: Disk) -> None:
        def release() -> None:
            with contextlib.suppress(QMPError):
                self.monitor.execute("blockdev-del", {"node-name": disk.node})
            self.disks.pop(disk.volume_id, None)
            log.info("server %s: volume %s unplugged", self.id, disk.volume_id)

        self._unplug(disk.volume_id, disk.device, release)

    def _plug_nic(self, nic: Nic) -> None:
        segment = self.backend.segment(nic.network_id)
        self.monitor.execute(
            "netdev_add",
            {"type": "stream", "id": nic.netdev, "server": False, "addr": segment.endpoint},
        )
        try:
            self.monitor.execute(
                "device_add",
                {
                    "driver": "virtio-net-pci",
                    "netdev": nic.netdev,
                    "id": nic.device,
                    "mac": nic.mac,
                },
            )
        except QMPError:
            self.monitor.execute("netdev_del", {"id": nic.netdev})
            raise
        self.nics[nic.nic_id] = nic
        log.info("server %s: private NIC %s plugged", self.id, nic.nic_id)

    def _unplug_nic(self, nic: Nic) -> None:
        def release() -> None:
            with contextlib.suppress(QMPError):
                self.monitor.execute("netdev_del", {"id": nic.netdev})
            self.nics.pop(nic.nic_id, None)
            self.backend.release_segments()

        self._unplug(nic.nic_id, nic.device, release)

    def _unplug(self, key: str, device: str, release: Callable[[], None]) -> None:
        """`device_del`, then `release` once the guest let the device go (DEVICE_DELETED),
        now or at a later reconcile: a guest that is still booting answers late."""
        mark = self.monitor.mark()
        try:
            self.monitor.execute("device_del", {"id": device})
        except QMPError as exc:
            if exc.error_class != "DeviceNotFound":
                raise
        self.unplugging[key] = (device, mark, release)
        self._finish_unplugs(wait=10.0)

    def _finish_unplugs(self, wait: float = 0.0) -> None:
        for key, (device, mark, release) in list(self.unplugging.items()):
            gone = self.monitor.wait_event(
                "DEVICE_DELETED", functools.partial(_device_is, device), wait, mark
            )
            if gone is not None:
                del self.unplugging[key]
                release()


def _device_is(device: str, event_data: dict[str, Any]) -> bool:
    return bool(event_data.get("device") == device)


def _on_network(network_id: str, nic: dict[str, Any]) -> bool:
    return bool(nic.get("private_network_id") == network_id)


def _free_port(address: str) -> int | None:
    with socket.socket() as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return None
        return int(probe.getsockname()[1])


# --- the backend ------------------------------------------------------------------------------


class QemuBackend:
    """The MachineBackend protocol (and its optional capabilities) on QEMU VMs."""

    def __init__(self, cloud: Any, settings: Settings | None = None) -> None:
        self.cloud = cloud
        self.store: Store = cloud.store
        self.settings = settings or Settings()
        self.layout = Layout(cloud.store.state_dir)
        self.timer = TimerBackend(cloud.clock.timestamp, getattr(cloud, "transition_seconds", None))
        self.lock = threading.RLock()  # the registries below; never held while waiting
        self.machines: dict[str, Machine] = {}
        self.addresses: dict[str, str] = {}  # metadata source address -> server id
        self.remembered_ports: dict[str, set[int]] = {}  # by server id, see _forwards
        self.segments: dict[str, Any] = {}
        self.segments_lock = threading.Lock()
        self.launcher = Launcher()
        self.boots = BootGate()
        self.metadata = MetadataService(
            cloud, self.server_for_address, guest_ipv4=GUEST_IPV4, gateway=SLIRP_HOST
        )
        self.started = False

    # --- process life ---------------------------------------------------------------------

    def start(self) -> None:
        """Reap what a crashed run left, fix the records it left mid-way, serve metadata."""
        reap_leftovers(self.layout)
        for tool in (QEMU, QEMU_IMG, "nc"):
            if shutil.which(tool) is None:
                log.error("%s is not installed: VMs cannot run (or reach their metadata)", tool)
        self._recover_records()
        self.metadata.start()
        self.started = True
        log.info("QEMU backend: metadata service on 127.0.0.1:%s", self.metadata.port)

    def _recover_records(self) -> None:
        with self.cloud.lock:
            for server in self.store.all(SERVER):
                if server.get("_pending"):
                    continue
                if server.get("state_detail") == "terminating":
                    server["_pending"] = [[0, {GONE: True}]]
                elif server.get("state") != "stopped":
                    server["state"], server["state_detail"] = "stopped", ""
                else:
                    continue
                self.store.put(SERVER, server)
            for snapshot in self.store.all(SNAPSHOT, lambda s: s.get("state") == "snapshotting"):
                if not snapshot.get("_pending"):
                    snapshot["state"] = "error"
                    snapshot["error_details"] = "interrupted by a localcloud restart"
                    self.store.put(SNAPSHOT, snapshot)
        for image in self.store.all(IMAGE, lambda i: i.get("state") == "creating"):
            if not image.get("_pending"):
                ids = [image["root_volume"]["id"]]
                ids += [v["id"] for v in (image.get("extra_volumes") or {}).values()]
                self.follow(image, ids, {"state": "available"})

    def shutdown(self) -> None:
        """Quit every VM (localcloud is exiting); their servers are stopped."""
        with self.lock:
            machines = list(self.machines.values())
            self.machines.clear()
        threads = [threading.Thread(target=m.halt) for m in machines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        with self.cloud.lock:
            for machine in machines:
                server = self.store.get(SERVER, machine.id)
                if server and server.get("state") != "stopped" and not server.get("_pending"):
                    server["state"], server["state_detail"] = "stopped", ""
                    self.store.put(SERVER, server)
        self._stop_segments(set())
        if self.started:
            self.metadata.stop()
            self.started = False
        shutil.rmtree(self.layout.runtime, ignore_errors=True)  # sockets only

    def reset(self) -> None:
        """The operator's reset: every VM stops and every disk goes with the records."""
        with self.lock:
            machines = list(self.machines.values())
            self.machines.clear()
            self.addresses.clear()
        for machine in machines:
            machine.halt()
        self._stop_segments(set())
        for folder in (self.layout.machines, self.layout.volumes, self.layout.block):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)

    # --- records ------------------------------------------------------------------------------

    def read(self, kind: str, id_: str) -> dict[str, Any] | None:
        with self.cloud.lock:
            return self.store.get(kind, id_)

    def patch_server(
        self, server_id: str, fields: dict[str, Any], final_for: Machine | None = None
    ) -> None:
        """Write state fields; a final state is skipped when the API has queued another
        transition since (checked under the lock the API holds while it queues)."""
        with self.cloud.lock:
            if final_for is not None and (final_for.lifecycle_queued > 0 or final_for.halted):
                return
            server = self.store.get(SERVER, server_id)
            if server is None or server.get("_pending"):
                return
            server.update(fields)
            server["modification_date"] = self.cloud.clock.iso()
            self.store.put(SERVER, server)

    def mark_gone(self, server_id: str) -> None:
        """The terminated server disappears on its next read (the API then releases it)."""
        with self.cloud.lock:
            server = self.store.get(SERVER, server_id)
            if server is not None:
                server["_pending"] = [[0, {GONE: True}]]
                self.store.put(SERVER, server)

    def _base(self, snapshot_id: str | None, depth: int = 0) -> Path | None:
        """The data file a volume made from this snapshot starts from (None: empty)."""
        if not snapshot_id or depth > 8:
            return None
        blob = self.store.blob_path(f"{snapshot_id}.qcow2")
        if blob.exists():
            return blob
        snapshot = self.store.get(SNAPSHOT, snapshot_id)
        if snapshot is not None:
            source = snapshot.get("_source_snapshot")
            return self._base(source, depth + 1) if source != snapshot_id else None
        block = self.store.get(BLOCK_SNAPSHOT, snapshot_id)
        if block is not None and block.get("_blob") and Path(block["_blob"]).exists():
            return Path(block["_blob"])
        return None

    def _uefi(self, server: dict[str, Any]) -> bool:
        tags = [*(server.get("tags") or []), *((server.get("image") or {}).get("tags") or [])]
        return any(t.lower() in UEFI_TAGS for t in tags)

    def plan(self, server_id: str) -> Plan | None:
        """The VM the records describe (read under the cloud's lock, as one consistent view)."""
        with self.cloud.lock:
            server = self.store.get(SERVER, server_id)
            if server is None:
                return None
            disks = []
            for slot, ref in sorted(server["_volumes"].items(), key=lambda kv: int(kv[0])):
                if ref["volume_type"] == "l_ssd":
                    volume = self.store.get(VOLUME, ref["id"])
                    if volume is None:
                        continue
                    base = self._base(volume.get("_base_snapshot"))
                    path = self.layout.volumes / f"{volume['id']}.qcow2"
                    disks.append(
                        Disk(volume["id"], "l_ssd", path, base, volume["size"], slot == "0")
                    )
                else:
                    volume = self.store.get(BLOCK_VOLUME, ref["id"])
                    if volume is None:
                        continue
                    blob = Path(volume["_blob"]) if volume.get("_blob") else None
                    path = self.layout.block / f"{volume['id']}.qcow2"
                    disks.append(Disk(volume["id"], "sbs", path, blob, volume["size"]))
            nics = [
                Nic(n["id"], n["mac_address"], n["private_network_id"])
                for n in self.store.all(PRIVATE_NIC, lambda n: n.get("server_id") == server_id)
                if self.store.get(PRIVATE_NETWORK, n["private_network_id"]) is not None
            ]
            return Plan(
                server=server,
                disks=disks,
                nics=nics,
                forwards=self._forwards(server),
                config={
                    "boot_type": server.get("boot_type") or "local",
                    "uefi": self._uefi(server),
                },
            )

    def _addresses(self, server_id: str) -> list[str]:
        return [
            ip["address"]
            for ip in self.store.all(IP, lambda i: (i.get("server") or {}).get("id") == server_id)
            if ip.get("type") != "routed_ipv6"
        ]

    def _forwards(self, server: dict[str, Any]) -> set[tuple[str, int]]:
        group_id = server.get("_security_group_id") or ""
        group = self.store.get(SECURITY_GROUP, group_id)
        rules = self.store.all(RULE, lambda r: r.get("_security_group_id") == group_id)
        # A port a rule once named stays watched: dropping then deleting the drop rule
        # must open it again under an accepting default policy.
        with self.lock:
            remembered = self.remembered_ports.setdefault(server["id"], set())
            remembered.update(rule_ports(rules))
            ports = allowed_ports(group, rules, set(remembered))
        return {(address, port) for address in self._addresses(server["id"]) for port in ports}

    # --- machines and their addresses ---------------------------------------------------------

    def machine(self, server_id: str) -> Machine:
        with self.lock:
            machine = self.machines.get(server_id)
            if machine is None:
                machine = self.machines[server_id] = Machine(self, server_id)
            return machine

    def forget(self, machine: Machine) -> None:
        with self.lock:
            if self.machines.get(machine.id) is machine:
                del self.machines[machine.id]
            for address, server_id in list(self.addresses.items()):
                if server_id == machine.id:
                    del self.addresses[address]
            self.remembered_ports.pop(machine.id, None)

    def source_address(self, server_id: str) -> str:
        """A loopback address for this server's metadata connections, unique in the process."""
        with self.lock:
            for address, owner in self.addresses.items():
                if owner == server_id:
                    return address
            number = 1
            while True:
                address = f"127.{SOURCE_NET[1]}.{number >> 8 & 0xFF}.{number & 0xFF}"
                if number & 0xFF not in (0, 255) and address not in self.addresses:
                    self.addresses[address] = server_id
                    return address
                number += 1

    def server_for_address(self, address: str) -> str | None:
        with self.lock:
            return self.addresses.get(address)

    # --- the protocol: transitions ------------------------------------------------------------

    def _begin(self, server: dict[str, Any], state: str, detail: str, op: str) -> None:
        server["state"], server["state_detail"] = state, detail
        server.pop("_pending", None)
        self.machine(server["id"]).submit(op)

    def power_on(self, server: dict[str, Any]) -> None:
        self._begin(server, "starting", "allocating node", "start")

    def power_off(self, server: dict[str, Any]) -> None:
        self._begin(server, "stopping", "stopping", "power_off")

    def stop_in_place(self, server: dict[str, Any]) -> None:
        self._begin(server, "stopping", "stopping in place", "stop_in_place")

    def reboot(self, server: dict[str, Any]) -> None:
        self._begin(server, "stopping", "rebooting", "reboot")

    def terminate(self, server: dict[str, Any]) -> None:
        self._begin(server, "stopping", "terminating", "terminate")

    def delete(self, server: dict[str, Any]) -> None:
        """The record is gone: quit its VM, remove its files and the disks of the local
        volumes that went with it."""
        volumes = [r["id"] for r in server["_volumes"].values() if r["volume_type"] == "l_ssd"]
        self.machine(server["id"]).submit("destroy", volumes)

    def schedule(self, record: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        self.timer.schedule(record, steps)

    def advance(self, record: dict[str, Any]) -> bool:
        return self.timer.advance(record)

    # --- the protocol: optional capabilities --------------------------------------------------

    def refresh(self, server_id: str | None = None) -> None:
        with self.lock:
            targets = [m for m in self.machines.values() if server_id is None or m.id == server_id]
        for machine in targets:
            if machine.proc is not None:
                machine.submit("reconcile")

    def endpoint(self, server_id: str, port: int) -> dict[str, Any] | None:
        with self.lock:
            machine = self.machines.get(server_id)
        if machine is None or (machine.proc is None and not machine.forwards_shown):
            return None
        return machine.endpoint(port, self._addresses(server_id))

    def capture(
        self, snapshot: dict[str, Any], volume: dict[str, Any], then: dict[str, Any]
    ) -> None:
        server_id = (volume.get("server") or {}).get("id")
        if server_id:
            self.machine(server_id).submit("capture", snapshot["id"], volume["id"], then)
        else:
            threading.Thread(
                target=self.capture_now,
                args=(snapshot["id"], volume["id"], then, None),
                daemon=True,
                name=f"capture-{snapshot['id'][:8]}",
            ).start()

    def capture_now(
        self, snapshot_id: str, volume_id: str, then: dict[str, Any], machine: Machine | None
    ) -> None:
        """Copy a local volume into the snapshot's blob: hot through QMP when the VM has the
        disk open, cold with qemu-img otherwise; then apply `then` (or the error)."""
        target = self.store.blob_path(f"{snapshot_id}.qcow2")
        patch = dict(then)
        started = time.monotonic()
        try:
            with self.cloud.lock:
                volume = self.store.get(VOLUME, volume_id)
                base = self._base(volume.get("_base_snapshot")) if volume else None
            if volume is None:
                raise RuntimeError(f"volume {volume_id} is gone")
            disk = self.layout.volumes / f"{volume_id}.qcow2"
            plugged = machine.disks.get(volume_id) if machine and machine.running() else None
            if machine is not None and plugged is not None:
                self._hot_copy(machine, plugged, target)
                how = "hot"
            else:
                copy_disk(disk if disk.exists() else base, target, volume["size"])
                how = "cold"
            log.info(
                "snapshot %s of volume %s: %s copy in %.1f s",
                snapshot_id,
                volume_id,
                how,
                time.monotonic() - started,
            )
        except Exception as exc:
            log.exception("snapshot %s of volume %s failed", snapshot_id, volume_id)
            target.unlink(missing_ok=True)
            patch = {"state": "error", "error_details": f"the copy failed: {exc}"}
        with self.cloud.lock:
            snapshot = self.store.get(SNAPSHOT, snapshot_id)
            if snapshot is None:
                target.unlink(missing_ok=True)
                return
            snapshot.update(patch)
            snapshot["_source_snapshot"] = snapshot_id if target.exists() else None
            snapshot["modification_date"] = self.cloud.clock.iso()
            self.store.put(SNAPSHOT, snapshot)

    def _hot_copy(self, machine: Machine, disk: Disk, target: Path) -> None:
        partial = target.with_name(target.name + ".part")
        _qemu_img("create", "-q", "-f", "qcow2", str(partial), str(virtual_size(disk.path)))
        node = "bk" + target.stem.replace("-", "")[:20]
        qmp = machine.monitor
        qmp.execute(
            "blockdev-add",
            {
                "driver": "qcow2",
                "node-name": node,
                "file": {"driver": "file", "filename": str(partial)},
            },
        )
        try:
            mark = qmp.mark()
            qmp.execute(
                "blockdev-backup",
                {"job-id": node, "device": disk.node, "target": node, "sync": "full"},
            )
            done = qmp.wait_event(
                ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED"),
                lambda d: d.get("device") == node,
                3600,
                mark,
            )
        finally:
            with contextlib.suppress(QMPError, QMPClosed):
                qmp.execute("blockdev-del", {"node-name": node})
        if done is None or done["event"] != "BLOCK_JOB_COMPLETED" or done["data"].get("error"):
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"blockdev-backup failed: {(done or {}).get('data')}")
        partial.replace(target)

    def follow(self, image: dict[str, Any], snapshot_ids: list[str], then: dict[str, Any]) -> None:
        def wait() -> None:
            while True:
                snapshots = [self.read(SNAPSHOT, s) for s in snapshot_ids]
                states = [(s or {}).get("state", "gone") for s in snapshots]
                if "snapshotting" not in states:
                    break
                time.sleep(1)
            patch = dict(then) if all(s == "available" for s in states) else {"state": "error"}
            with self.cloud.lock:
                record = self.store.get(IMAGE, image["id"])
                if record is not None:
                    record.update(patch)
                    record["modification_date"] = self.cloud.clock.iso()
                    self.store.put(IMAGE, record)

        threading.Thread(target=wait, daemon=True, name=f"image-{image['id'][:8]}").start()

    def volume_deleted(self, volume_id: str) -> None:
        with self.cloud.lock:
            if self.store.get(VOLUME, volume_id) is not None:
                return
        with self.lock:
            in_use = any(volume_id in m.disks for m in self.machines.values())
        if not in_use:
            (self.layout.volumes / f"{volume_id}.qcow2").unlink(missing_ok=True)
            self._sweep_blobs()

    def block_disk_deleted(self, volume_id: str) -> None:
        """An SBS volume record is gone (the Block API's hook)."""
        (self.layout.block / f"{volume_id}.qcow2").unlink(missing_ok=True)
        self._sweep_blobs()

    def block_capture(self, volume_id: str, target: Path) -> bool:
        """Copy an SBS volume's data into a Block snapshot's blob (the Block API's hook);
        False when the volume never held data here. A volume a VM has open is read as it is
        (`-U`): crash-consistent at best, as the Block API offers no freeze either."""
        disk = self.layout.block / f"{volume_id}.qcow2"
        if not disk.exists():
            return False
        copy_disk(disk, Path(target), 0, force_share=True)
        return True

    def _backed_by(self) -> set[str]:
        files = [*self.layout.volumes.glob("*.qcow2"), *self.layout.block.glob("*.qcow2")]
        return {b for b in (backing_file(f) for f in files) if b}

    def discard_blob(self, path: Path) -> None:
        """A deleted snapshot's blob stays while volumes are overlays on it."""
        if str(path) in self._backed_by():
            deferred = set(self.store.meta("qemu_deferred_blobs", []))
            deferred.add(str(path))
            self.store.set_meta("qemu_deferred_blobs", sorted(deferred))
        else:
            path.unlink(missing_ok=True)

    def _sweep_blobs(self) -> None:
        deferred = self.store.meta("qemu_deferred_blobs", [])
        if not deferred:
            return
        used = self._backed_by()
        keep = []
        for blob in deferred:
            if blob in used:
                keep.append(blob)
            else:
                Path(blob).unlink(missing_ok=True)
        self.store.set_meta("qemu_deferred_blobs", keep)

    # --- private network segments -------------------------------------------------------------

    def segment(self, network_id: str) -> Any:
        """The running switch of a private network, started on first use."""
        from localcloud.networks import Segment

        with self.segments_lock:
            segment = self.segments.get(network_id)
            if segment is not None:
                return segment
            network = self.store.get(PRIVATE_NETWORK, network_id)
            if network is None:
                raise RuntimeError(f"private network {network_id} is gone")
            subnet = next(
                s["subnet"]
                for s in network["subnets"]
                if ipaddress.ip_network(s["subnet"], strict=False).version == 4
            )
            segment = Segment(
                self.layout.segment_socket(network_id),
                subnet,
                functools.partial(self._lease, network_id),
                functools.partial(self._resolve, network_id),
                f"{network['name']}.internal",
            )
            segment.start()
            self.segments[network_id] = segment
            return segment

    def release_segments(self) -> None:
        """Stop the switches no running VM is plugged into."""
        with self.lock:
            used = {
                nic.network_id
                for m in list(self.machines.values())
                if m.proc is not None
                for nic in list(m.nics.values())
            }
        self._stop_segments(used)

    def _stop_segments(self, keep: set[str]) -> None:
        with self.segments_lock:
            idle = [n for n in self.segments if n not in keep]
            stopping = [self.segments.pop(n) for n in idle]
        for segment in stopping:
            segment.stop()

    def _lease(self, network_id: str, mac: str) -> Any:
        from localcloud.networks import Lease

        mac = mac.lower()
        nics = self.store.all(
            PRIVATE_NIC,
            lambda n: (
                n.get("private_network_id") == network_id
                and (n.get("mac_address") or "").lower() == mac
            ),
        )
        for nic in nics:
            address = self._nic_ipv4(nic["id"])
            server = self.store.get(SERVER, nic["server_id"])
            if address and server:
                return Lease(ip=address, hostname=server.get("hostname") or server["name"])
        return None

    def _nic_ipv4(self, nic_id: str) -> str | None:
        for ip in self.store.all(IPAM_IP, lambda i: (i.get("resource") or {}).get("id") == nic_id):
            if not ip.get("is_ipv6"):
                return str(ip["address"]).split("/")[0]
        return None

    def _resolve(self, network_id: str, fqdn: str) -> str | None:
        """`<server name>.<network name or id>.internal` (also by server or NIC id) -> IPv4."""
        name = fqdn.rstrip(".").lower()
        if not name.endswith(".internal"):
            return None
        labels = name[: -len(".internal")].split(".")
        if len(labels) != 2:
            return None
        host, network_label = labels
        networks = [
            n
            for n in self.store.all(PRIVATE_NETWORK)
            if network_label in (n["name"].lower(), n["id"])
        ]
        networks.sort(key=lambda n: n["id"] != network_id)  # this segment's network first
        for network in networks:
            on_network = functools.partial(_on_network, network["id"])
            for nic in self.store.all(PRIVATE_NIC, on_network):
                server = self.store.get(SERVER, nic["server_id"]) or {}
                names = {
                    (server.get("name") or "").lower(),
                    (server.get("hostname") or "").lower(),
                    nic["server_id"],
                    nic["id"],
                }
                if host in names:
                    return self._nic_ipv4(nic["id"])
        return None


def install(cloud: Any, backend: QemuBackend) -> None:
    """Publish the Block API's hooks (the Block module calls them when present)."""
    cloud.add_hook("block_volume_capture", backend.block_capture)
    cloud.add_hook("block_volume_disk_deleted", backend.block_disk_deleted)
