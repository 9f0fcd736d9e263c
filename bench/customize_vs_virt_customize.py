"""Time builds.customize.customize() against virt-customize on the same six-step recipe.

Both run on fresh overlays of the Debian fixture image, in the same process run, with the same
appliance size (2 GiB, 2 vCPUs) and the same accelerator decision. The recipe: install packages,
write a file, upload a file, run a command, enable a unit, remove a package.

What ours does on top (virt-customize does no sysprep): inspection with the OS info, replacing
and restoring resolv.conf, the never-booted clean-up (machine-id, SSH host keys, logs, caches,
leases...), the SELinux check and the package manifest. virt-customize on its side writes a
random seed.

Usage: .venv/bin/python bench/customize_vs_virt_customize.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builds import guestfs_launch
from builds.customize import customize
from tests.fixtures.images import debian_fixture_image

MEMSIZE_MB = 2048


def overlay(base: Path, folder: Path, name: str) -> Path:
    """A fresh qcow2 overlay on ``base``."""
    path = folder / name
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(path)],
        check=True,
    )
    return path


def time_ours(disk: Path, files_dir: Path) -> float:
    """Seconds our customize() takes on ``disk``."""
    steps = [
        {"type": "install_packages", "params": {"packages": ["hello", "sl"]}, "enabled": True},
        {"type": "write_file", "params": {"path": "/etc/bench", "content": "bench\n"}},
        {"type": "upload_file", "params": {"source": "upload.txt", "destination": "/etc/up"}},
        {"type": "run_command", "params": {"command": "echo bench > /root/bench.out"}},
        {"type": "enable_unit", "params": {"unit": "systemd-networkd.service"}},
        {"type": "remove_packages", "params": {"packages": ["sl"]}},
    ]
    started = time.monotonic()
    customize(
        disk,
        steps,
        log=lambda line: None,
        progress=lambda done, total: None,
        cancelled=lambda: False,
        secrets={},
        files_dir=files_dir,
        allowed_hosts=[],
        step_timeout=1800,
        memsize_mb=MEMSIZE_MB,
    )
    return time.monotonic() - started


def time_virt_customize(disk: Path, files_dir: Path) -> float:
    """Seconds virt-customize takes for the same operations on ``disk``."""
    env = dict(os.environ)
    if guestfs_launch.backend_settings():
        env["LIBGUESTFS_BACKEND_SETTINGS"] = ",".join(guestfs_launch.backend_settings() or [])
    cmd = [
        "virt-customize", "-q", "--format", "qcow2", "-a", str(disk),
        "--memsize", str(MEMSIZE_MB), "--smp", "2",
        "--install", "hello,sl",
        "--write", "/etc/bench:bench",
        "--upload", f"{files_dir / 'upload.txt'}:/etc/up",
        "--run-command", "echo bench > /root/bench.out",
        "--run-command", "systemctl enable systemd-networkd.service",
        "--uninstall", "sl",
    ]  # fmt: skip
    started = time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    base = debian_fixture_image()
    probe_started = time.monotonic()
    guestfs_launch._decided_settings()
    print(
        f"accelerator: {guestfs_launch.backend_settings() or 'default (KVM)'} "
        f"(decided once per process in {time.monotonic() - probe_started:.1f} s, not timed below)"
    )
    ours_total = theirs_total = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-customize-") as tmp:
        folder = Path(tmp)
        (folder / "upload.txt").write_text("uploaded\n")
        for round_number in range(1, args.rounds + 1):
            # Alternate who goes first so host caches favour neither.
            order = ["ours", "theirs"] if round_number % 2 else ["theirs", "ours"]
            for who in order:
                disk = overlay(base, folder, f"{who}-{round_number}.qcow2")
                if who == "ours":
                    seconds = time_ours(disk, folder)
                    ours_total += seconds
                else:
                    seconds = time_virt_customize(disk, folder)
                    theirs_total += seconds
                print(f"round {round_number}: {who} {seconds:.1f} s", flush=True)
                disk.unlink()
    ours, theirs = ours_total / args.rounds, theirs_total / args.rounds
    print(f"customize: ours {ours:.1f} s, virt-customize {theirs:.1f} s, ratio {ours / theirs:.2f}")
    print(
        "ours also does: inspection + OS info, resolv.conf replace/restore, never-booted "
        "clean-up, SELinux check, package manifest"
    )


if __name__ == "__main__":
    main()
