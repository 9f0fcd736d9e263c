#!/usr/bin/env python3
"""Serve a local demo upstream: a small bootable Debian image and its SHA256SUMS.

`make run` starts it so that the "Debian 12 (local demo)" catalogue entry can be built with
no network: its channel is http://127.0.0.1:8081/debian-12/. The image (kernel, GRUB for BIOS
and UEFI, no provider package) is built once by tests/fixtures/bootable.py (debootstrap, then
libguestfs; needs Debian's mirror) and cached. The stand-in provider package the demo recipe
installs (`scaleway-ecosystem`, tests/fixtures/ecosystem/) is written into the files folder
that recipe steps read (FACTORY_FILES_DIR).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import os
import shutil
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FILE_NAME = "debian-12-local-amd64.qcow2"


def prepare(folder: Path, files_dir: Path) -> None:
    from tests.fixtures.bootable import bootable_debian_image
    from tests.fixtures.ecosystem import build_ecosystem_deb

    files_dir.mkdir(parents=True, exist_ok=True)
    build_ecosystem_deb(files_dir)
    channel = folder / "debian-12"
    channel.mkdir(parents=True, exist_ok=True)
    source = bootable_debian_image("base")
    target = channel / FILE_NAME
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    digest = hashlib.sha256()
    with target.open("rb") as fh:
        for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
            digest.update(chunk)
    serial = dt.datetime.fromtimestamp(source.stat().st_mtime, tz=dt.UTC).strftime("%Y%m%d-%H%M")
    (channel / "SHA256SUMS").write_text(f"# serial: {serial}\n{digest.hexdigest()}  {FILE_NAME}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--folder", type=Path, default=ROOT / "var" / "demo-upstream")
    args = parser.parse_args()
    print("Preparing the demo upstream image (the first time takes a few minutes)...", flush=True)
    prepare(args.folder, Path(os.environ.get("FACTORY_FILES_DIR") or ROOT / "files"))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(args.folder))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"Demo upstream on http://127.0.0.1:{args.port}/debian-12/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
