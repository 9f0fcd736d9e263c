"""Where artefacts and downloaded upstream files are kept beyond the worker's own disk.

Builds always work on local files (settings.ARTEFACT_DIR and the DownloadCache under
settings.DOWNLOAD_CACHE_DIR). The store decides what else keeps a copy:

- `LocalStore` (ARTEFACT_STORE=local, the default): nothing more; the local disk is the store.
- `S3Store` (ARTEFACT_STORE=s3): a bucket (ARTEFACT_STORE_BUCKET in ARTEFACT_STORE_REGION,
  reached through cloud.objectstorage), so that a worker on another machine can resume any
  build: a done stage whose file is missing locally gets it back from the bucket instead of
  running again.

Keys: `cache/sha256/<hex>` for downloaded upstream files (content-addressed, like the cache)
and `artefacts/<label>/<arch>/build-<id>.qcow2` for built artefacts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings


def key_for_cache(sha256: str) -> str:
    """The key of a downloaded upstream file, by its SHA-256."""
    return f"cache/sha256/{sha256.lower()}"


def key_for_artefact(label: str, arch: str, build_id: int) -> str:
    """The key of the artefact a build produced."""
    return f"artefacts/{label}/{arch}/build-{build_id}.qcow2"


def key_for_artefact_path(path: Path | str) -> str | None:
    """The key of an artefact from its local path (`.../<label>/<arch>/build-<id>.qcow2`), or
    None when the path does not have that shape."""
    path = Path(path)
    stem = path.name.removesuffix(".qcow2")
    if not (path.name.endswith(".qcow2") and stem.startswith("build-")):
        return None
    build_id = stem.removeprefix("build-")
    if not build_id.isdigit() or not path.parent.name or not path.parent.parent.name:
        return None
    return key_for_artefact(path.parent.parent.name, path.parent.name, int(build_id))


class ArtefactStore(Protocol):
    def save(self, path: Path, key: str) -> None: ...

    def restore(self, key: str, path: Path) -> bool: ...


class LocalStore:
    """The local disk alone: saving keeps nothing more, restoring finds nothing."""

    def save(self, path: Path, key: str) -> None:
        return None

    def restore(self, key: str, path: Path) -> bool:
        return False


class S3Store:
    """A bucket that keeps a copy of every saved file (raises cloud.retries.CloudError)."""

    def __init__(self, bucket: str, region: str) -> None:
        self.bucket = bucket
        self.region = region
        self._client: Any = None
        self._bucket_ready = False

    @property
    def s3(self) -> Any:
        if self._client is None:
            from cloud.clients import s3_client

            self._client = s3_client(self.region)
        return self._client

    def save(self, path: Path, key: str) -> None:
        """Stream `path` to the bucket as a multipart upload; skipped when an object of the
        same size is already there (keys are content-addressed or unique per build)."""
        from cloud import objectstorage

        path = Path(path)
        size = path.stat().st_size
        existing = objectstorage.head(self.s3, self.bucket, key)
        if existing is not None and int(existing.get("ContentLength", -1)) == size:
            return
        if not self._bucket_ready:
            objectstorage.ensure_bucket(self.s3, self.bucket, self.region)
            self._bucket_ready = True
        objectstorage.upload(
            self.s3,
            self.bucket,
            key,
            path,
            metadata={},
            on_progress=lambda done: None,
            cancelled=lambda: False,
        )

    def restore(self, key: str, path: Path) -> bool:
        """Stream the object to a temporary file next to `path`, then move it into place;
        False when there is no such object."""
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        from cloud import objectstorage
        from cloud.retries import CloudError

        path = Path(path)
        found = objectstorage.head(self.s3, self.bucket, key)
        if found is None:
            return False
        size = int(found.get("ContentLength", 0))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.restore-", dir=path.parent)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                self.s3.download_fileobj(
                    self.bucket,
                    key,
                    handle,
                    Config=TransferConfig(
                        multipart_chunksize=objectstorage.part_size(size),
                        max_concurrency=settings.PUBLISH_UPLOAD_CONCURRENCY,
                    ),
                )
                handle.flush()
                os.fsync(handle.fileno())
            if tmp.stat().st_size != size:
                raise CloudError(
                    f"download of {key}: got {tmp.stat().st_size} bytes, expected {size}"
                )
            os.replace(tmp, path)
        except ClientError as exc:
            if objectstorage._code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return False  # removed between the check and the download
            raise objectstorage._error(exc, f"download {key} from {self.bucket}") from exc
        except BotoCoreError as exc:
            raise objectstorage._error(exc, f"download {key} from {self.bucket}") from exc
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return True


def artefact_store() -> ArtefactStore:
    """The store settings.ARTEFACT_STORE names: "local" (default) or "s3"."""
    kind = str(settings.ARTEFACT_STORE or "local").lower()
    if kind == "s3":
        return S3Store(
            bucket=settings.ARTEFACT_STORE_BUCKET,
            region=settings.ARTEFACT_STORE_REGION,
        )
    return LocalStore()
