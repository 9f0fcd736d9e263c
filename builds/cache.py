"""A content-addressed cache of downloaded upstream images.

Layout under the root directory:

- `sha256/<hex>`: a verified file, named by its SHA-256; never partial, never corrupt, because
  files only arrive there by `os.replace` after their hash has been checked;
- `sha256/<hex>.json`: its sidecar (url, filename, size, last_used, upstream digests), which
  also serves as the index from an upstream digest (e.g. Debian's sha512) to the file;
- `partial/`: downloads in progress, resumable;
- `.lock`: an `fcntl.flock` lock taken while files are added or evicted, so two processes
  adding the same file do not trample each other.

A size limit is enforced after each `put` by evicting the least recently used files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1024 * 1024


class CacheError(Exception):
    """The cache refused a file; the message says why in plain words."""


class DownloadCache:
    """A directory of verified files addressed by SHA-256, with an LRU size limit."""

    def __init__(self, root: Path | str, max_bytes: int | None = None) -> None:
        """Use (and create) `root`; `max_bytes` None or 0 means no size limit."""
        self.root = Path(root)
        self.max_bytes = max_bytes or None
        self.files_dir = self.root / "sha256"
        self.partial_dir = self.root / "partial"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / ".lock"

    # -- locking -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache-wide exclusive lock (blocking) for the duration of the block."""
        with self._flock(self._lock_path):
            yield

    @contextlib.contextmanager
    def partial_lock(self, key: str) -> Iterator[Path]:
        """Hold the lock of one partial download and yield its path.

        Two processes fetching the same file queue here; the second then finds the file in
        the cache instead of writing into the same partial file.
        """
        path = self.partial_path(key)
        with self._flock(path.with_name(path.name + ".lock")):
            yield path

    @staticmethod
    @contextlib.contextmanager
    def _flock(path: Path) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- paths -------------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        """Where the file with this SHA-256 lives (whether or not it is there)."""
        sha256 = sha256.lower()
        if not _HEX64.match(sha256):
            raise CacheError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.files_dir / sha256

    def partial_path(self, key: str) -> Path:
        """The partial file for a download key (only letters, digits, `.`, `-`, `_` kept)."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", key)[:200]
        if not safe.strip("."):
            raise CacheError(f"unusable partial key {key!r}")
        return self.partial_dir / f"{safe}.part"

    # -- reading -----------------------------------------------------------------------------

    def lookup(self, sha256: str) -> Path | None:
        """Return the cached file with this SHA-256 and mark it used, or None."""
        path = self.path_for(sha256)
        if not path.is_file():
            return None
        meta = self._read_meta(path)
        meta["last_used"] = time.time()
        self._write_meta(path, meta)
        return path

    def find_upstream(self, algorithm: str, digest: str) -> str | None:
        """The SHA-256 of a cached file whose upstream `algorithm` digest is `digest`, if any."""
        algorithm, digest = algorithm.lower(), digest.lower()
        if algorithm == "sha256" and self.path_for(digest).is_file():
            return digest
        for sidecar in self.files_dir.glob("*.json"):
            sha = sidecar.stem
            if not _HEX64.match(sha) or not (self.files_dir / sha).is_file():
                continue
            meta = self._read_meta(self.files_dir / sha)
            if meta.get("upstream", {}).get(algorithm) == digest:
                return sha
        return None

    def metadata(self, sha256: str) -> dict[str, Any]:
        """The sidecar of a cached file (empty if it has none)."""
        return self._read_meta(self.path_for(sha256))

    def entries(self) -> list[tuple[Path, dict[str, Any]]]:
        """Every final file with its sidecar."""
        return [
            (p, self._read_meta(p))
            for p in sorted(self.files_dir.iterdir())
            if _HEX64.match(p.name) and p.is_file()
        ]

    def total_size(self) -> int:
        """Bytes taken by final files."""
        return sum(p.stat().st_size for p, _ in self.entries())

    # -- writing -----------------------------------------------------------------------------

    def put(
        self,
        tmp_path: Path,
        sha256: str,
        *,
        url: str = "",
        filename: str = "",
        upstream: dict[str, str] | None = None,
        trust_digest: bool = False,
    ) -> Path:
        """Move a finished file into the cache under its SHA-256 and return its final path.

        The file is re-hashed first unless `trust_digest` says the caller hashed these very
        bytes while writing them; a mismatch raises CacheError and removes the file. If the
        same content is already cached, `tmp_path` is deleted and the existing file kept.
        Afterwards, least recently used files are evicted until the cache fits its limit.
        """
        final = self.path_for(sha256)
        sha256 = final.name
        tmp_path = Path(tmp_path)
        if not trust_digest:
            actual = _sha256_of(tmp_path)
            if actual != sha256:
                tmp_path.unlink(missing_ok=True)
                raise CacheError(f"checksum mismatch: expected sha256 {sha256}, got {actual}")
        with self.locked():
            meta = self._read_meta(final) if final.is_file() else {}
            if final.is_file():
                tmp_path.unlink(missing_ok=True)
            else:
                # fsync first: after a crash the name must not point at unwritten blocks.
                with tmp_path.open("rb") as f:
                    os.fsync(f.fileno())
                if tmp_path.parent.resolve() != self.files_dir.resolve():
                    # os.replace is atomic only within one file system: stage next to the
                    # final name first if the file comes from elsewhere.
                    staged = self._stage(tmp_path)
                    os.replace(staged, final)
                else:
                    os.replace(tmp_path, final)
            merged_upstream = {**meta.get("upstream", {}), **(upstream or {})}
            self._write_meta(
                final,
                {
                    "url": url or meta.get("url", ""),
                    "filename": filename or meta.get("filename", ""),
                    "size": final.stat().st_size,
                    "added": meta.get("added", time.time()),
                    "last_used": time.time(),
                    "upstream": {k.lower(): v.lower() for k, v in merged_upstream.items()},
                },
            )
            self._evict_locked(keep=sha256)
        return final

    def evict(self) -> list[str]:
        """Evict least recently used files until under the limit; return their SHA-256s."""
        with self.locked():
            return self._evict_locked(keep=None)

    def remove(self, sha256: str) -> None:
        """Delete a cached file and its sidecar."""
        final = self.path_for(sha256)
        with self.locked():
            final.unlink(missing_ok=True)
            final.with_name(final.name + ".json").unlink(missing_ok=True)

    def clean_partials(self) -> int:
        """Remove partial downloads nobody is writing; return how many were removed."""
        removed = 0
        for path in self.partial_dir.glob("*.part"):
            lock = path.with_name(path.name + ".lock")
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a download holds it: leave its file alone
                path.unlink(missing_ok=True)
                removed += 1
                lock.unlink(missing_ok=True)
            finally:
                os.close(fd)
        for stray in self.files_dir.glob(".stage-*"):
            stray.unlink(missing_ok=True)
        return removed

    # -- internals ---------------------------------------------------------------------------

    def _stage(self, source: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix=".stage-", dir=self.files_dir)
        staged = Path(name)
        try:
            with source.open("rb") as src, os.fdopen(fd, "wb") as dst:
                while block := src.read(_CHUNK):
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        source.unlink(missing_ok=True)
        return staged

    def _evict_locked(self, keep: str | None) -> list[str]:
        if self.max_bytes is None:
            return []
        entries = self.entries()
        total = sum(p.stat().st_size for p, _ in entries)
        evicted: list[str] = []
        for path, _meta in sorted(entries, key=lambda e: (e[1].get("last_used", 0), e[0].name)):
            if total <= self.max_bytes:
                break
            if path.name == keep:
                continue
            size = path.stat().st_size
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".json").unlink(missing_ok=True)
            total -= size
            evicted.append(path.name)
        return evicted

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        sidecar = path.with_name(path.name + ".json")
        try:
            data = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _write_meta(path: Path, meta: dict[str, Any]) -> None:
        sidecar = path.with_name(path.name + ".json")
        # Write then rename, so a reader never sees half a sidecar.
        fd, tmp = tempfile.mkstemp(prefix=".meta-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f, sort_keys=True)
        os.replace(tmp, sidecar)


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()
