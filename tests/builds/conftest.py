"""Fixtures for the build tests: the real Debian image and writable working copies of it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def work_copy(debian_qcow2: Path, tmp_path: Path) -> Path:
    """A writable qcow2 overlay on the fixture image, discarded after the test."""
    copy = tmp_path / "work.qcow2"
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            str(debian_qcow2),
            str(copy),
        ],
        check=True,
    )
    return copy


@pytest.fixture
def our_qemu_pids():
    """A function listing the QEMU processes this test process started and that still run."""

    def pids() -> set[int]:
        done = subprocess.run(
            ["pgrep", "-P", str(os.getpid()), "-f", "qemu-system"], capture_output=True, text=True
        )
        return {int(p) for p in done.stdout.split()}

    return pids
