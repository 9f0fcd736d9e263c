"""Stream an upstream file to disk while hashing it, resuming an interrupted transfer.

Rules this module enforces:

- only hosts in an allow list are contacted, including every redirect target (redirects are
  followed by hand, at most five);
- the body goes to disk in 1 MiB chunks and is hashed on the way, never held in memory;
- an interrupted transfer leaves its bytes in the partial file, and the next attempt asks for
  the rest with a Range request (or starts over when the server ignores Range);
- a `cancelled()` callable is polled every chunk and a read timeout bounds a stalled server;
- failures are `DownloadError` with a plain-words message; a cancel is cloud.cancel's
  `Cancelled`, after the partial file has been removed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from cloud.cancel import CancelCheck, Cancelled

CHUNK_SIZE = 1024 * 1024
MAX_REDIRECTS = 5
SMALL_FILE_LIMIT = 16 * 1024 * 1024

Progress = Callable[[int, int | None], None]

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_REDIRECTS = {301, 302, 303, 307, 308}


class DownloadError(Exception):
    """A download failed; the message says why in plain words."""


@dataclass
class DownloadResult:
    """What a finished download produced."""

    path: Path
    url: str
    size: int
    digests: dict[str, str] = field(default_factory=dict)
    resumed_from: int = 0
    attempts: int = 1

    @property
    def sha256(self) -> str:
        """The SHA-256 of the file, always computed."""
        return self.digests["sha256"]


def check_host(url: str, allowed_hosts: Iterable[str]) -> None:
    """Raise DownloadError unless the URL is http(s) and its host is exactly an allowed one."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise DownloadError(f"refusing {url}: only http and https URLs are fetched")
    host = (parts.hostname or "").lower()
    allowed = {h.lower().strip() for h in allowed_hosts}
    if not host or host not in allowed:
        raise DownloadError(f"host not allowed: {host or '(none)'} (from {url})")


def open_url(
    url: str,
    *,
    allowed_hosts: Iterable[str],
    session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
    verify: bool | str = True,
) -> requests.Response:
    """GET a URL as a stream, following redirects by hand and checking every host.

    The caller must close the returned response. HTTP errors raise DownloadError.
    """
    allowed = list(allowed_hosts)
    session = session or requests.Session()
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        check_host(current, allowed)
        try:
            response = session.get(
                current,
                headers={"Accept-Encoding": "identity", **(headers or {})},
                stream=True,
                allow_redirects=False,
                timeout=(timeout, timeout),
                verify=verify,
            )
        except requests.exceptions.SSLError as exc:
            raise DownloadError(f"TLS certificate check failed for {current}: {exc}") from exc
        except requests.exceptions.Timeout as exc:
            raise DownloadError(f"no answer within {timeout:g} s from {current}") from exc
        except requests.exceptions.ConnectionError as exc:
            raise DownloadError(f"could not connect to {current}: {exc}") from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            raise DownloadError(f"not a URL that can be downloaded: {current} ({exc})") from exc
        if response.status_code in _REDIRECTS:
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise DownloadError(f"redirect without a Location header at {current}")
            current = urljoin(current, location)
            continue
        if response.status_code == 404:
            response.close()
            raise DownloadError(f"not found (HTTP 404) at {current}")
        if response.status_code >= 500:
            response.close()
            raise DownloadError(
                f"the server failed (HTTP {response.status_code} {response.reason}) at {current}"
            )
        if response.status_code >= 400 and response.status_code != 416:
            response.close()
            raise DownloadError(
                f"the server refused (HTTP {response.status_code} {response.reason}) at {current}"
            )
        response.url = current
        return response
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects starting from {url}")


def fetch_bytes(
    url: str,
    *,
    allowed_hosts: Iterable[str],
    session: requests.Session | None = None,
    timeout: float = 60,
    verify: bool | str = True,
    limit: int = SMALL_FILE_LIMIT,
) -> bytes:
    """Download a small file (a checksum or signature file) into memory, with a size limit."""
    response = open_url(
        url, allowed_hosts=allowed_hosts, session=session, timeout=timeout, verify=verify
    )
    with response:
        if response.status_code != 200:
            raise DownloadError(f"unexpected HTTP {response.status_code} at {response.url}")
        data = bytearray()
        try:
            for chunk in response.iter_content(CHUNK_SIZE):
                data += chunk
                if len(data) > limit:
                    raise DownloadError(f"{url} is larger than {limit} bytes")
        except requests.exceptions.RequestException as exc:
            raise DownloadError(f"the connection broke while reading {url}: {exc}") from exc
        return bytes(data)


def download(
    url: str,
    partial: Path,
    *,
    allowed_hosts: Iterable[str],
    algorithms: Iterable[str] = ("sha256",),
    progress: Progress | None = None,
    cancelled: CancelCheck | None = None,
    timeout: float = 60,
    retries: int = 2,
    session: requests.Session | None = None,
    verify: bool | str = True,
) -> DownloadResult:
    """Download `url` into the file `partial`, resuming it if it already holds bytes.

    Hashes with sha256 plus every name in `algorithms`. A broken connection is retried up to
    `retries` times, each time resuming with a Range request. If the attempts run out, the
    bytes stay in `partial` for a later call to resume. On cancel, disk full or a file the
    server no longer has, the partial file is removed.
    """
    names = ["sha256", *[a.lower() for a in algorithms if a.lower() != "sha256"]]
    for name in names:
        if name not in hashlib.algorithms_available:
            raise DownloadError(f"unknown checksum algorithm {name!r}")
    allowed = list(allowed_hosts)
    cancelled = cancelled or (lambda: False)
    session = session or requests.Session()
    partial.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    first_offset: int | None = None
    while True:
        attempt += 1
        try:
            hashers, offset = _rehash(partial, names, cancelled)
            if first_offset is None:
                first_offset = offset
            size = _transfer(
                url,
                partial,
                hashers,
                offset,
                allowed,
                progress,
                cancelled,
                timeout,
                session,
                verify,
            )
        except Cancelled:
            partial.unlink(missing_ok=True)
            raise
        except _Retryable as exc:
            if attempt > retries:
                raise DownloadError(str(exc)) from exc.__cause__
            continue
        return DownloadResult(
            path=partial,
            url=url,
            size=size,
            digests={name: h.hexdigest() for name, h in hashers.items()},
            resumed_from=first_offset or 0,
            attempts=attempt,
        )


class _Retryable(Exception):
    """A transient failure: the bytes so far are kept and the next attempt resumes."""


def _rehash(
    partial: Path, names: list[str], cancelled: CancelCheck
) -> tuple[dict[str, hashlib._Hash], int]:
    """Hash the bytes already on disk, so the final digests cover the whole file."""
    hashers = {name: hashlib.new(name) for name in names}
    if not partial.exists():
        return hashers, 0
    offset = 0
    with partial.open("rb") as f:
        while block := f.read(CHUNK_SIZE):
            if cancelled():
                raise Cancelled(f"download of {partial.name} cancelled")
            for h in hashers.values():
                h.update(block)
            offset += len(block)
    return hashers, offset


def _transfer(
    url: str,
    partial: Path,
    hashers: dict[str, hashlib._Hash],
    offset: int,
    allowed: list[str],
    progress: Progress | None,
    cancelled: CancelCheck,
    timeout: float,
    session: requests.Session,
    verify: bool | str,
) -> int:
    """One HTTP attempt: append the rest of the file to `partial`; return the final size."""
    if cancelled():
        raise Cancelled(f"download of {url} cancelled")
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = open_url(
            url,
            allowed_hosts=allowed,
            session=session,
            headers=headers,
            timeout=timeout,
            verify=verify,
        )
    except DownloadError as exc:
        message = str(exc)
        if message.startswith(("could not connect", "no answer", "the server failed")):
            raise _Retryable(message) from exc
        if "HTTP 404" in message:
            partial.unlink(missing_ok=True)
        raise
    with response:
        total: int | None
        if response.status_code == 416:
            # The partial file is not a prefix of what the server has now: start over.
            partial.unlink(missing_ok=True)
            raise _Retryable(f"the server rejected resuming {url} at byte {offset}")
        if response.status_code == 206 and offset:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match[1]) != offset:
                partial.unlink(missing_ok=True)
                raise _Retryable(f"the server answered a different byte range for {url}")
            total = int(match[3]) if match[3] != "*" else None
            mode = "ab"
        elif response.status_code == 200:
            if offset:
                # The server ignored Range: the bytes on disk are discarded and re-hashed.
                for name in list(hashers):
                    hashers[name] = hashlib.new(name)
                offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        else:
            raise DownloadError(f"unexpected HTTP {response.status_code} at {response.url}")
        done = offset
        if progress:
            progress(done, total)
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else 0))
        except OSError as exc:
            raise DownloadError(f"cannot write {partial}: {exc.strerror}") from exc
        # A write error closes the descriptor here; _write_all already removed a full disk's file.
        try:
            if mode == "wb":
                os.ftruncate(fd, 0)
            raw = response.raw
            hash_list = list(hashers.values())
            buffer = bytearray()
            eof = False
            while not eof:
                if cancelled():
                    raise Cancelled(f"download of {url} cancelled")
                # Fill one chunk from whatever the socket has (read1), so that bytes received
                # before a reset are still written and the next attempt resumes after them.
                failure: BaseException | None = None
                while len(buffer) < CHUNK_SIZE:
                    try:
                        piece = raw.read1(CHUNK_SIZE - len(buffer), decode_content=False)
                    except (requests.exceptions.RequestException, OSError) as exc:
                        failure = exc
                        break
                    except urllib3.exceptions.HTTPError as exc:
                        failure = exc
                        break
                    if not piece:
                        eof = True
                        break
                    buffer += piece
                if buffer:
                    _write_all(fd, buffer, partial)
                    for h in hash_list:
                        h.update(buffer)
                    done += len(buffer)
                    buffer.clear()
                    if progress:
                        progress(done, total)
                if failure is not None:
                    raise _Retryable(_broken(url, done, total, failure)) from failure
        finally:
            os.close(fd)
        if total is not None and done != total:
            raise _Retryable(f"the connection to {url} closed after {done} of {total} bytes")
        return done


def _write_all(fd: int, chunk: bytes | bytearray, partial: Path) -> None:
    view = memoryview(chunk)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                partial.unlink(missing_ok=True)
                raise DownloadError(f"disk full while writing {partial}") from exc
            raise DownloadError(f"cannot write {partial}: {exc.strerror}") from exc
        view = view[written:]


def _broken(url: str, done: int, total: int | None, exc: BaseException) -> str:
    of_total = f" of {total}" if total is not None else ""
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
        return f"the server stopped sending data for {url} after {done}{of_total} bytes"
    if "reset" in str(exc).lower() or isinstance(exc, ConnectionResetError):
        return f"the connection to {url} was reset after {done}{of_total} bytes"
    return f"the connection to {url} broke after {done}{of_total} bytes ({exc})"
