"""localcloud.qcow2: the header checks of a snapshot import, and the data an export writes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from localcloud import qcow2


def make(path: Path, size: str, *options: str) -> Path:
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), size], check=True
    )
    return path


def test_an_importable_image_passes_and_what_scaleway_refuses_is_refused(tmp_path: Path) -> None:
    assert qcow2.inspect(make(tmp_path / "ok.qcow2", "2G")).virtual_size == 2 * 1024**3
    with pytest.raises(qcow2.Qcow2Error, match=qcow2.MSG_SIZE):
        qcow2.inspect(make(tmp_path / "small.qcow2", "64M"))
    base = make(tmp_path / "base.qcow2", "2G")
    with pytest.raises(qcow2.Qcow2Error, match=qcow2.MSG_BACKING):
        qcow2.inspect(make(tmp_path / "top.qcow2", "2G", "-F", "qcow2", "-b", str(base)))
    (tmp_path / "raw.img").write_bytes(b"\0" * 4096)
    with pytest.raises(qcow2.Qcow2Error, match=qcow2.MSG_NOT_QCOW2):
        qcow2.inspect(tmp_path / "raw.img")


def test_an_export_sends_the_blob_or_an_empty_image_of_the_snapshots_size(tmp_path: Path) -> None:
    blob = make(tmp_path / "blob.qcow2", "2G")
    scratch = tmp_path / "scratch.qcow2"
    assert qcow2.data_or_empty(blob, 10**10, scratch) == blob
    assert not scratch.exists()

    for missing in (None, tmp_path / "gone.qcow2"):
        scratch.unlink(missing_ok=True)
        assert qcow2.data_or_empty(missing, 10 * 10**9, scratch) == scratch
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", str(scratch)],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        assert (info["format"], info["virtual-size"]) == ("qcow2", 10 * 10**9)


def test_without_qemu_img_an_export_with_no_data_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(qcow2.Qcow2Error, match="qemu-img is missing"):
        qcow2.data_or_empty(None, 10**9, tmp_path / "scratch.qcow2")
    assert not (tmp_path / "scratch.qcow2").exists()
