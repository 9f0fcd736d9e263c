"""Turn a customized working copy into the published QCOW2: compressed, standalone, checksummed.

The output uses zlib compression (zstd-compressed qcow2 is not readable by older QEMU and
several cloud importers) and has no backing file. It is written under a temporary name next to
the destination and renamed at the end, so a half-written image is never visible under its
final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.cancel import CancelCheck, Cancelled

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FinalizeResult:
    """Size in bytes and SHA-256 (hex) of the finalized image."""

    size: int
    sha256: str


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (images are too big for memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def qcow2_info(path: Path) -> dict[str, Any]:
    """``qemu-img info --output=json`` of ``path`` as a dict."""
    done = subprocess.run(
        ["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise ValueError(f"qemu-img cannot read {path}: {done.stderr.strip()}")
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def assert_plain_qcow2(path: Path) -> None:
    """Raise ValueError unless ``path`` is a standalone, unencrypted, non-zstd qcow2."""
    info = qcow2_info(path)
    if info.get("format") != "qcow2":
        raise ValueError(f"{path.name} is not a qcow2 image (format: {info.get('format')})")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ValueError(
            f"{path.name} has a backing file ({info.get('backing-filename')}); "
            "a published image must be standalone"
        )
    if info.get("encrypted"):
        raise ValueError(f"{path.name} is encrypted")
    specific = (info.get("format-specific") or {}).get("data") or {}
    if specific.get("encrypt"):
        raise ValueError(f"{path.name} is encrypted")
    if specific.get("compression-type") == "zstd":
        raise ValueError(
            f"{path.name} uses zstd compression, which many importers cannot read; use zlib"
        )


def finalize(
    src: Path,
    dest: Path,
    *,
    log: Callable[[str], None],
    cancelled: CancelCheck,
) -> FinalizeResult:
    """Convert ``src`` into a compressed standalone qcow2 at ``dest``; return its size and hash.

    Raises Cancelled (and leaves no temporary file) when ``cancelled()`` turns true, and
    RuntimeError when qemu-img fails.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = [
        "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zlib",
        str(src), str(tmp),
    ]  # fmt: skip
    started = time.monotonic()
    log("$ " + " ".join([*cmd[:-1], dest.name]))
    try:
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                while True:
                    try:
                        code = proc.wait(timeout=0.5)
                        break
                    except subprocess.TimeoutExpired:
                        if cancelled():
                            raise Cancelled("cancelled during the final conversion") from None
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if code != 0:
                stderr.seek(0)
                message = stderr.read().decode("utf-8", "replace").strip()
                raise RuntimeError(f"qemu-img convert failed (exit code {code}): {message}")
        log(f"converted in {time.monotonic() - started:.0f} s; computing SHA-256")
        digest = sha256_of(tmp)
        size = tmp.stat().st_size
        tmp.replace(dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    log(f"{dest.name}: {size} bytes, sha256 {digest}")
    return FinalizeResult(size=size, sha256=digest)
