"""The fetch stage: resolve the upstream channel, download, verify, and cache the image.

`fetch()` either returns a verified QCOW2 file in the download cache or raises `FetchError`
(or cloud.cancel's `Cancelled` when the caller cancelled). A file that failed verification
is deleted; only a transfer that broke off (network, server error) leaves its bytes in the
cache's `partial/` folder, so the next fetch resumes it instead of starting over.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import requests

from builds.cache import CacheError, DownloadCache
from builds.download import DownloadError, download
from builds.upstream import ResolveError, SourceSpec, resolve
from cloud.cancel import CancelCheck

__all__ = ["FetchError", "FetchResult", "fetch"]

_QEMU_IMG_TIMEOUT = 120


class FetchError(Exception):
    """The fetch stage failed; the message says why in plain words."""


class ChecksumMismatch(FetchError):
    """The downloaded bytes do not match the upstream checksum."""


class NotQcow2(FetchError):
    """The downloaded file is not a usable QCOW2 image."""


@dataclass(frozen=True)
class FetchResult:
    """A verified upstream image in the download cache."""

    path: Path
    url: str
    filename: str
    serial: str
    sha256: str
    size: int
    checksum_algorithm: str
    checksum: str
    from_cache: bool


def fetch(
    spec: SourceSpec,
    *,
    cache: DownloadCache,
    allowed_hosts: Iterable[str],
    log: Callable[[str], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    cancelled: CancelCheck | None = None,
    timeout: float = 60,
    session: requests.Session | None = None,
    verify: bool | str = True,
) -> FetchResult:
    """Resolve `spec`, then reuse the cached file or download and verify a new one."""
    say = log or (lambda message: None)
    allowed = list(allowed_hosts)
    session = session or requests.Session()
    try:
        resolved = resolve(
            spec, allowed_hosts=allowed, timeout=timeout, session=session, verify=verify
        )
    except ResolveError as exc:
        raise FetchError(str(exc)) from exc
    say(
        f"Upstream build {resolved.serial}: {resolved.filename} "
        f"({resolved.algorithm} {resolved.expected_digest[:16]}...)"
        + (f", checksum file signed by {resolved.signed_by}" if resolved.signed_by else "")
    )

    def result(path: Path, sha256: str, from_cache: bool) -> FetchResult:
        return FetchResult(
            path=path,
            url=resolved.url,
            filename=resolved.filename,
            serial=resolved.serial,
            sha256=sha256,
            size=path.stat().st_size,
            checksum_algorithm=resolved.algorithm,
            checksum=resolved.expected_digest,
            from_cache=from_cache,
        )

    cached = _from_cache(cache, resolved.algorithm, resolved.expected_digest)
    if cached:
        say(f"Reusing the cached file {cached[0]}")
        return result(*cached, from_cache=True)

    key = f"{resolved.algorithm}-{resolved.expected_digest}"
    with cache.partial_lock(key) as partial:
        # Another process may have finished the same file while we waited for the lock.
        cached = _from_cache(cache, resolved.algorithm, resolved.expected_digest)
        if cached:
            say(f"Reusing the cached file {cached[0]} (fetched by another worker)")
            return result(*cached, from_cache=True)
        if partial.exists():
            say(f"Resuming the download after {partial.stat().st_size} bytes")
        say(f"Downloading {resolved.url}")
        try:
            downloaded = download(
                resolved.url,
                partial,
                allowed_hosts=allowed,
                algorithms=[resolved.algorithm],
                progress=progress,
                cancelled=cancelled,
                timeout=timeout,
                session=session,
                verify=verify,
            )
        except DownloadError as exc:
            raise FetchError(str(exc)) from exc
        try:
            got = downloaded.digests[resolved.algorithm]
            if got != resolved.expected_digest:
                raise ChecksumMismatch(
                    f"checksum mismatch: expected {resolved.algorithm} "
                    f"{resolved.expected_digest}, got {got} for {resolved.filename}"
                )
            say(f"{resolved.algorithm} verified ({downloaded.size} bytes)")
            _check_qcow2(partial)
            final = cache.put(
                partial,
                downloaded.sha256,
                url=resolved.url,
                filename=resolved.filename,
                upstream={resolved.algorithm: resolved.expected_digest},
                trust_digest=True,
            )
        except CacheError as exc:
            partial.unlink(missing_ok=True)
            raise FetchError(str(exc)) from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    say(f"Stored as {final}")
    return result(final, downloaded.sha256, from_cache=False)


def _from_cache(cache: DownloadCache, algorithm: str, digest: str) -> tuple[Path, str] | None:
    sha256 = cache.find_upstream(algorithm, digest)
    if not sha256:
        return None
    path = cache.lookup(sha256)
    return (path, sha256) if path else None


def _check_qcow2(path: Path) -> None:
    """Ask qemu-img what the file is: it must be a QCOW2 without a backing file."""
    try:
        proc = subprocess.run(
            ["qemu-img", "info", "--force-share", "--output=json", str(path)],
            capture_output=True,
            text=True,
            timeout=_QEMU_IMG_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise FetchError("qemu-img is not installed on this machine") from exc
    except subprocess.TimeoutExpired as exc:
        raise FetchError("qemu-img info did not finish in time") from exc
    if proc.returncode != 0:
        raise NotQcow2(f"qemu-img cannot read the image: {proc.stderr.strip()}")
    try:
        info = json.loads(proc.stdout)
    except ValueError as exc:
        raise FetchError("qemu-img info printed something that is not JSON") from exc
    fmt = info.get("format")
    if fmt != "qcow2":
        raise NotQcow2(f"not a QCOW2 image (qemu-img says format '{fmt}')")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        # An upstream image must be self-contained: a backing file would read host files.
        raise NotQcow2(
            f"the QCOW2 image refers to a backing file ({info.get('backing-filename')}), "
            "which an upstream image must not do"
        )
