"""Launching libguestfs appliances: KVM or TCG, and killing a running appliance.

On some hosts /dev/kvm exists but QEMU aborts or hangs under KVM ("failed to set MSR"). The first
launch in a process therefore checks, once, that KVM can boot a kernel at all, and uses
``force_tcg`` if not; a later KVM launch failure also switches to ``force_tcg``. The decision is
remembered for the rest of the process. An explicit
``LIBGUESTFS_BACKEND_SETTINGS`` in the environment wins and skips the probe (libguestfs reads it
itself when a handle is created).

libguestfs has no per-call timeout and every API call takes the handle lock, so the only way to
interrupt a blocked call from another thread is to kill the QEMU process: ``Appliance.kill``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import select
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import guestfs

# None: not decided yet; [] : the default accelerator works; ["force_tcg"]: KVM is unusable.
_backend_settings: list[str] | None = None
_decision_lock = threading.Lock()


def _new_handle(
    disk: Path, *, readonly: bool, network: bool, memsize_mb: int, settings: list[str] | None
) -> guestfs.GuestFS:
    g = guestfs.GuestFS(python_return_dict=True)
    if settings:
        g.set_backend_settings(settings)
    g.set_network(network)
    g.set_memsize(memsize_mb)
    g.set_smp(min(2, os.cpu_count() or 1))
    # Keep a Ctrl-C aimed at the worker from killing the appliance behind libguestfs' back.
    g.set_pgroup(True)
    disk_format = "qcow2" if _is_qcow2(disk) else "raw"
    g.add_drive_opts(str(disk), format=disk_format, readonly=readonly)
    return g


def _is_qcow2(disk: Path) -> bool:
    with open(disk, "rb") as f:
        return f.read(4) == b"QFI\xfb"


def backend_settings() -> list[str] | None:
    """The backend settings this process uses (None while undecided)."""
    return _backend_settings


def _kvm_boots_a_kernel(timeout_s: float = 8.0) -> bool:
    """Boot the host kernel under KVM for a few seconds and watch for its first console line.

    Measured here: with the broken KVM, QEMU does not always abort ("failed to set MSR"); it may
    hang silently instead, which would hang ``g.launch()`` for its 20-minute timeout. A working
    KVM prints "Linux version" within a second; TCG needs several.
    """
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    qemu = shutil.which("qemu-system-x86_64")
    if not kernels or not qemu or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    cmd = [
        qemu, "-accel", "kvm", "-cpu", "host", "-nodefaults", "-display", "none",
        "-m", "256", "-no-reboot", "-serial", "stdio",
        "-kernel", kernels[-1], "-append", "console=ttyS0 panic=-1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.25)
            if not ready:
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)  # type: ignore[union-attr]
            if not chunk:
                return False
            seen += chunk
            if b"Linux version" in seen:
                return True
        return False
    finally:
        proc.kill()
        proc.wait()


def _decided_settings() -> list[str] | None:
    """The backend settings for this process: None when the environment decides."""
    global _backend_settings
    if os.environ.get("LIBGUESTFS_BACKEND_SETTINGS"):
        return None
    with _decision_lock:
        if _backend_settings is None:
            _backend_settings = [] if _kvm_boots_a_kernel() else ["force_tcg"]
        return _backend_settings


def open_handle(
    disk: Path, *, readonly: bool, network: bool, memsize_mb: int = 2048
) -> guestfs.GuestFS:
    """Create a handle for ``disk``, launch the appliance and return the launched handle."""
    global _backend_settings
    settings = _decided_settings()
    g = _new_handle(
        disk, readonly=readonly, network=network, memsize_mb=memsize_mb, settings=settings
    )
    try:
        g.launch()
    except RuntimeError:
        g.close()
        if settings != []:
            raise
        # KVM booted a kernel but the appliance still failed: fall back to TCG for good.
        with _decision_lock:
            _backend_settings = ["force_tcg"]
        g = _new_handle(
            disk, readonly=readonly, network=network, memsize_mb=memsize_mb,
            settings=["force_tcg"],
        )  # fmt: skip
        _launch_or_close(g)
    return g


def _launch_or_close(g: guestfs.GuestFS) -> None:
    try:
        g.launch()
    except BaseException:
        g.close()
        raise


class Appliance:
    """A launched appliance as a context manager; ``kill()`` may be called from any thread.

    On exit the appliance is shut down (errors from a killed appliance are ignored) and the
    handle closed, so no QEMU process is left behind.
    """

    def __init__(
        self, disk: Path, *, readonly: bool, network: bool = False, memsize_mb: int = 2048
    ) -> None:
        self.disk = disk
        self.readonly = readonly
        self.network = network
        self.memsize_mb = memsize_mb
        self.g: guestfs.GuestFS | None = None
        self.pid: int | None = None
        self.killed = False
        self._kill_lock = threading.Lock()

    def __enter__(self) -> Appliance:
        self.g = open_handle(
            self.disk, readonly=self.readonly, network=self.network, memsize_mb=self.memsize_mb
        )
        # get_pid takes the handle lock, so it must be read now, not from the killing thread.
        self.pid = self.g.get_pid()
        return self

    def kill(self) -> None:
        """Kill the QEMU process so that a blocked guestfs call returns with an error."""
        with self._kill_lock:
            if self.pid is None or self.killed:
                return
            self.killed = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Shut the appliance down (flushing writes) and close the handle."""
        g, self.g = self.g, None
        if g is None:
            return
        try:
            if not self.killed:
                g.shutdown()
        finally:
            g.close()
            self._wait_gone()

    def _wait_gone(self) -> None:
        # close() reaps QEMU; this is only a guard against a process that outlives it.
        if self.pid is None:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            # The caller is failing anyway; a shutdown error must not hide the first one.
            with contextlib.suppress(RuntimeError):
                self.close()
        else:
            self.close()
