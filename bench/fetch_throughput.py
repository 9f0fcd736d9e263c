"""Benchmark: our download-plus-SHA-256 throughput against `curl -s URL | sha256sum`.

Serves a file of at least 1 GiB of incompressible data from the same local test server the
tests use, then times, in the same run and alternating, `builds.download.download()` (which
writes the file to disk and hashes it) and `curl -s URL | sha256sum` (which only hashes).
Prints MB/s (10^6 bytes per second) for each and the ratio ours/curl; the target is >= 0.9.
For context it also times `curl -s URL -o /dev/null`, the transfer alone.

The payload is written once into a cache folder outside the repository and reused:

    .venv/bin/python bench/fetch_throughput.py [--size-mib 1024] [--rounds 3] [--dir PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script from anywhere: make the project importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builds.download import download
from tests.builds.upstream_server import UpstreamServer

DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fetch-bench"
MIB = 1024 * 1024


def ensure_payload(folder: Path, size_mib: int) -> tuple[Path, str]:
    """Create (once) `payload.bin` of `size_mib` MiB of random-ish bytes; return it and its sha."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = folder / "payload.bin"
    digest_file = folder / "payload.sha256"
    if payload.exists() and payload.stat().st_size == size_mib * MIB and digest_file.exists():
        return payload, digest_file.read_text().strip()
    print(f"Writing {size_mib} MiB of random data to {payload} (once) ...", flush=True)
    # A 16 MiB random block, each copy prefixed with its index: incompressible, not sparse,
    # and cheap to produce.
    block = os.urandom(16 * MIB - 8)
    h = hashlib.sha256()
    tmp = payload.with_suffix(".tmp")
    with tmp.open("wb") as f:
        for i in range(size_mib // 16):
            chunk = i.to_bytes(8, "big") + block
            f.write(chunk)
            h.update(chunk)
        rest = size_mib * MIB - (size_mib // 16) * 16 * MIB
        if rest:
            chunk = os.urandom(rest)
            f.write(chunk)
            h.update(chunk)
    os.replace(tmp, payload)
    digest_file.write_text(h.hexdigest() + "\n")
    return payload, h.hexdigest()


def time_ours(url: str, scratch: Path, expected: str) -> float:
    """Seconds for download() into a partial file, hashing on the way; checks the digest."""
    partial = scratch / "partial" / "payload.part"
    partial.unlink(missing_ok=True)
    start = time.perf_counter()
    result = download(url, partial, allowed_hosts=["127.0.0.1"], timeout=60)
    elapsed = time.perf_counter() - start
    if result.sha256 != expected:
        raise SystemExit(f"our download hashed {result.sha256}, expected {expected}")
    partial.unlink()
    return elapsed


def time_curl(url: str, expected: str) -> float:
    """Seconds for `curl -s URL | sha256sum`; checks the digest."""
    start = time.perf_counter()
    proc = subprocess.run(
        f"curl -s --fail '{url}' | sha256sum",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    if proc.stdout.split()[0] != expected:
        raise SystemExit(f"curl | sha256sum gave {proc.stdout.split()[0]}, expected {expected}")
    return elapsed


def time_curl_transfer_only(url: str) -> float:
    """Seconds for `curl -s URL -o /dev/null`: the transfer ceiling, for context."""
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "--fail", "-o", "/dev/null", url], check=True)
    return time.perf_counter() - start


def main() -> None:
    """Parse arguments, run the alternating rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    if args.size_mib < 1024:
        print("note: below 1 GiB the figures are dominated by start-up costs")
    if not shutil.which("curl"):
        raise SystemExit("curl is not installed")

    payload, expected = ensure_payload(args.dir, args.size_mib)
    size = payload.stat().st_size
    server = UpstreamServer(payload.parent)
    url = server.url(payload.name)
    ours: list[float] = []
    curl: list[float] = []
    transfer: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="scratch-", dir=args.dir) as scratch:
            # Warm the page cache so the first timed round is not a disk read benchmark.
            time_curl(url, expected)
            for _ in range(args.rounds):
                ours.append(time_ours(url, Path(scratch), expected))
                curl.append(time_curl(url, expected))
                transfer.append(time_curl_transfer_only(url))
    finally:
        server.close()

    def rate(seconds: float) -> float:
        return size / seconds / 1e6

    ours_rate = rate(statistics.median(ours))
    curl_rate = rate(statistics.median(curl))
    print(f"file: {size} bytes ({size / MIB:.0f} MiB), {args.rounds} rounds, median")
    print(f"ours (download + sha256, written to disk): {ours_rate:8.1f} MB/s")
    print(f"curl -s URL | sha256sum:                   {curl_rate:8.1f} MB/s")
    print(
        f"curl -s URL -o /dev/null (no hashing):     {rate(statistics.median(transfer)):8.1f} MB/s"
    )
    print(f"ratio ours/curl: {ours_rate / curl_rate:.2f} (target >= 0.9)")
    print("rounds ours (s):", ", ".join(f"{t:.2f}" for t in ours))
    print("rounds curl (s):", ", ".join(f"{t:.2f}" for t in curl))


if __name__ == "__main__":
    main()
