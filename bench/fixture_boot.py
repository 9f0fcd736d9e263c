"""Guest CPU time of one boot of the bootable fixture under TCG, against a variant of it.

The VM tier's time is mostly boots (about 30 per twelve-check run on both storage types) and
TCG is CPU-bound, so a boot's cost is best read as the CPU seconds QEMU used until the first
SSH login worked: wall time swings with the machine's load, CPU time much less.

    .venv/bin/python bench/fixture_boot.py                      # the ready fixture, twice
    .venv/bin/python bench/fixture_boot.py fstab,no-e2scrub     # against a variant
    BENCH_BOOT_ROUNDS=3 BENCH_BOOT_CPU=qemu64 .venv/bin/python bench/fixture_boot.py

A variant is an overlay of the "ready" image changed offline with libguestfs (see CHANGES).
Baseline and variant boot alternately, ROUNDS times each, and the script prints the median CPU
seconds to the first SSH login, where they went (firmware and GRUB, kernel, initramfs,
userspace: QEMU's CPU time when each marker appears on the serial console) and the ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Console markers, in boot order: GRUB starts loading the kernel, the kernel starts, the
# initramfs starts, the root filesystem is mounted (userspace follows).
MARKERS = {
    "grub": "Loading Linux",
    "kernel": "Linux version",
    "initramfs": "Run /init",
    "userspace": "EXT4-fs (vda1): mounted",
}
# Offline changes a variant can be made of (shell run in the image's root by libguestfs).
CHANGES = {
    "fstab": r"sed -i 's|^\(UUID=[^ ]* /boot/efi vfat [^ ]* 0\) 1$|\1 0|' /etc/fstab",
    "no-e2scrub": "ln -sf /dev/null /etc/systemd/system/e2scrub_reap.service",
    "mitigations-off": "sed -i 's/net.ifnames=0/net.ifnames=0 mitigations=off/' "
    "/boot/grub/grub.cfg",
    "small-initramfs": "echo MODULES=list > /etc/initramfs-tools/conf.d/zz-bench.conf && "
    "printf 'virtio_pci\\nvirtio_blk\\next4\\n' >> /etc/initramfs-tools/modules && "
    "update-initramfs -u -k all",
}


def variant(base: Path, folder: Path, changes: list[str]) -> Path:
    import guestfs

    image = folder / "variant.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(image)],
        check=True,
    )
    g = guestfs.GuestFS(python_return_dict=True)
    try:
        if not os.environ.get("LIBGUESTFS_BACKEND_SETTINGS"):
            g.set_backend_settings(["force_tcg"])
        g.add_drive_opts(str(image), format="qcow2", readonly=False)
        g.launch()
        g.mount("/dev/sda1", "/")
        for change in changes:
            g.sh(CHANGES[change])
        g.umount_all()
        g.shutdown()
    finally:
        g.close()
    return image


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boot_once(image: Path, folder: Path) -> dict[str, float]:
    """CPU seconds of QEMU at each marker and at the first SSH login, and the wall time."""
    from tests.fixtures_tests import test_bootable as tb

    folder = Path(tempfile.mkdtemp(prefix="boot-", dir=folder))  # a console file per boot
    key, public_key = tb.new_key(folder, "key")
    metadata = tb.Metadata(hostname="bench", ssh_keys=[public_key])
    boots = tb.boot_vm.__wrapped__(folder)
    seen: dict[str, float] = {}
    with tb.MetadataServer(metadata) as server:
        boot = next(boots)
        vm = boot(image, "seabios", server.port)
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                text = vm.console.read_text(errors="replace") if vm.console.exists() else ""
                for name, marker in MARKERS.items():
                    if name not in seen and marker in text:
                        seen[name] = cpu_seconds(vm.process.pid)
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()
        _, wall = tb.wait_for_ssh(vm, key, "true")
        seen["ssh"] = cpu_seconds(vm.process.pid)
        seen["wall"] = wall
        done.set()
        boots.close()
    return seen


def main(changes: list[str]) -> None:
    os.environ.setdefault("FACTORY_LOCAL", "1")
    from tests.fixtures.bootable import bootable_debian_image

    unknown = [c for c in changes if c not in CHANGES]
    if unknown:
        sys.exit(f"unknown change(s) {unknown}; known: {', '.join(CHANGES)}")
    rounds = int(os.environ.get("BENCH_BOOT_ROUNDS", "2"))
    if os.environ.get("BENCH_BOOT_CPU"):
        from tests.fixtures_tests import test_bootable as tb

        popen = tb.subprocess.Popen

        def with_cpu(command, *args, **kwargs):  # type: ignore[no-untyped-def]
            if "-cpu" in command:
                command[command.index("-cpu") + 1] = os.environ["BENCH_BOOT_CPU"]
            return popen(command, *args, **kwargs)

        tb.subprocess.Popen = with_cpu  # type: ignore[misc,assignment]
    folder = Path(tempfile.mkdtemp(prefix="bench-boot-"))
    base = bootable_debian_image("ready")
    images = {"baseline (ready fixture)": base}
    if changes:
        images["variant (" + ",".join(changes) + ")"] = variant(base, folder, changes)
    else:
        images["ready fixture again"] = base
    results: dict[str, list[dict[str, float]]] = {name: [] for name in images}
    for _ in range(rounds):
        for name, image in images.items():
            one = boot_once(image, folder)
            results[name].append(one)
            print(f"{name}: {one['ssh']:.1f} CPU s to SSH, {one['wall']:.1f} s wall", flush=True)
    medians = {}
    for name, runs in results.items():
        steps = ["grub", "kernel", "initramfs", "userspace", "ssh"]
        med = {s: statistics.median(r.get(s, float("nan")) for r in runs) for s in steps}
        medians[name] = med["ssh"]
        parts, last = [], 0.0
        labels = ["firmware", "GRUB", "kernel", "initramfs", "userspace to SSH"]
        for label, step in zip(labels, steps, strict=True):
            parts.append(f"{label} {med[step] - last:.1f}")
            last = med[step]
        print(f"{name}: median {med['ssh']:.1f} CPU s ({'; '.join(parts)})")
    (first, a), (second, b) = medians.items()
    print(f"ratio {second} / {first}: {b / a:.2f}x  (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main([c for c in ",".join(sys.argv[1:]).split(",") if c])
