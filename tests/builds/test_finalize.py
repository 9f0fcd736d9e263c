"""Finalizing a working copy: standalone zlib qcow2, checksum, cancel, and the format checks."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from builds.finalize import assert_plain_qcow2, finalize, qcow2_info
from cloud.cancel import Cancelled


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    """A qcow2 overlay (with a backing file) over 16 MiB of partly random data."""
    raw = tmp_path / "base.raw"
    with open(raw, "wb") as f:
        f.write(os.urandom(4 * 1024 * 1024))
        f.write(b"\0" * 8 * 1024 * 1024)
        f.write(b"factory" * 100_000)
        f.truncate(16 * 1024 * 1024)
    base = tmp_path / "base.qcow2"
    qemu_img("convert", "-O", "qcow2", str(raw), str(base))
    top = tmp_path / "work.qcow2"
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(top))
    return top


def test_it_writes_a_standalone_zlib_qcow2_with_its_size_and_sha256(
    overlay: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "image.qcow2"
    lines: list[str] = []
    result = finalize(overlay, out, log=lines.append, cancelled=lambda: False)

    assert result.size == out.stat().st_size
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert_plain_qcow2(out)
    info = qcow2_info(out)
    assert info["format-specific"]["data"]["compression-type"] == "zlib"
    assert "backing-filename" not in info
    subprocess.run(["qemu-img", "compare", str(tmp_path / "base.raw"), str(out)], check=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["image.qcow2"]
    assert any(result.sha256 in line for line in lines)


def test_cancelling_kills_the_conversion_and_leaves_no_file(tmp_path: Path) -> None:
    raw = tmp_path / "big.raw"
    with open(raw, "wb") as f:
        # Random data compresses slowly: long enough to be cancelled mid-way.
        for _ in range(48):
            f.write(os.urandom(1024 * 1024))
    out = tmp_path / "out" / "image.qcow2"
    with pytest.raises(Cancelled):
        finalize(raw, out, log=lambda line: None, cancelled=lambda: True)
    assert list(out.parent.iterdir()) == []


def test_a_failed_conversion_says_why_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out" / "image.qcow2"
    with pytest.raises(RuntimeError, match="qemu-img convert failed"):
        finalize(tmp_path / "missing.qcow2", out, log=lambda line: None, cancelled=lambda: False)
    assert list(out.parent.iterdir()) == []


def test_only_plain_qcow2_images_pass_the_check(overlay: Path, tmp_path: Path) -> None:
    raw = tmp_path / "plain.raw"
    raw.write_bytes(b"\0" * 65536)
    with pytest.raises(ValueError, match="not a qcow2 image"):
        assert_plain_qcow2(raw)
    with pytest.raises(ValueError, match="has a backing file"):
        assert_plain_qcow2(overlay)
    zstd = tmp_path / "zstd.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", "compression_type=zstd", str(zstd), "1M")
    with pytest.raises(ValueError, match="zstd"):
        assert_plain_qcow2(zstd)
    encrypted = tmp_path / "luks.qcow2"
    qemu_img(
        "create", "-f", "qcow2", "--object", "secret,id=sec0,data=pw",
        "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        str(encrypted), "1M",
    )  # fmt: skip
    with pytest.raises(ValueError, match="encrypted"):
        assert_plain_qcow2(encrypted)
    plain = tmp_path / "plain.qcow2"
    qemu_img("create", "-f", "qcow2", str(plain), "1M")
    assert_plain_qcow2(plain)
    with pytest.raises(ValueError, match="cannot read"):
        assert_plain_qcow2(tmp_path / "missing.qcow2")
