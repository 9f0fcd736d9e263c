"""Object Storage: the artefact bucket of each region, streamed multipart uploads, and
deletion of a build's objects.

A snapshot import reads a bucket of the zone's own region, so the factory keeps one bucket
per region (PUBLISH_BUCKET; "{region}" in it is replaced by the region, for clouds where a
bucket name is taken in every region at once) and uploads each artefact once per region.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from s3transfer.subscribers import BaseSubscriber

from cloud.cancel import CancelCheck, Cancelled
from cloud.retries import CloudError

MiB = 1024**2
MIN_PART = 5 * MiB  # S3's smallest part (but the last)
MAX_PARTS = 1000  # Scaleway's limit (AWS allows 10,000)


@dataclass(frozen=True)
class StoredObject:
    """An object as a listing shows it."""

    region: str
    bucket: str
    key: str
    size: int
    last_modified: datetime | None


def bucket_name(region: str) -> str:
    """The artefact bucket of a region (setting PUBLISH_BUCKET)."""
    return settings.PUBLISH_BUCKET.replace("{region}", region)


def _error(exc: Exception, what: str) -> CloudError:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = err.get("Message") or err.get("Code") or "error"
        return CloudError(f"{what}: {message} [{err.get('Code', '')}]", status=status)
    return CloudError(f"{what}: {type(exc).__name__}: {exc}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_bucket(s3: Any, bucket: str, region: str) -> bool:
    """Create the bucket if it does not exist; True when it was created."""
    try:
        s3.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise _error(exc, f"check bucket {bucket} in {region}") from exc
    except BotoCoreError as exc:  # cannot connect, bad endpoint, ...
        raise _error(exc, f"check bucket {bucket} in {region}") from exc
    try:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as exc:
        if _code(exc) in ("BucketAlreadyOwnedByYou",):
            return False
        raise _error(exc, f"create bucket {bucket} in {region}") from exc
    except BotoCoreError as exc:
        raise _error(exc, f"create bucket {bucket} in {region}") from exc
    return True


def head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """An object's metadata, or None when it (or its bucket) does not exist."""
    try:
        found: dict[str, Any] = s3.head_object(Bucket=bucket, Key=key)
        return found
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return None
        raise _error(exc, f"check object {key}") from exc
    except BotoCoreError as exc:
        raise _error(exc, f"check object {key}") from exc


class _Progress(BaseSubscriber):  # type: ignore[misc]  # s3transfer has no type hints
    """Adds the bytes s3transfer's threads report to one counter."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        with self.lock:
            self.done += bytes_transferred


def part_size(size: int) -> int:
    """PUBLISH_PART_BYTES, grown so that the upload stays within Scaleway's 1000 parts."""
    wanted = max(MIN_PART, settings.PUBLISH_PART_BYTES)
    needed = math.ceil(size / MAX_PARTS)
    return max(wanted, math.ceil(needed / MiB) * MiB)


def upload(
    s3: Any,
    bucket: str,
    key: str,
    path: Path,
    *,
    metadata: dict[str, str],
    on_progress: Callable[[int], None],
    cancelled: CancelCheck,
) -> None:
    """Stream `path` to bucket/key as one multipart upload, reporting bytes sent.

    The file is read part by part (never loaded whole). On cancel the transfer is cancelled,
    which aborts the multipart upload, and Cancelled is raised.
    """
    size = path.stat().st_size
    config = TransferConfig(
        multipart_threshold=1,  # always multipart: one code path, resumable part by part
        multipart_chunksize=part_size(size),
        max_concurrency=settings.PUBLISH_UPLOAD_CONCURRENCY,
        use_threads=True,
    )
    progress = _Progress()
    manager = create_transfer_manager(s3, config)
    try:
        with open(path, "rb") as handle:
            future = manager.upload(
                handle,
                bucket,
                key,
                extra_args={"Metadata": metadata, "ContentType": "application/octet-stream"},
                subscribers=[progress],
            )
            reported = 0
            while not future.done():
                time.sleep(0.2)
                with progress.lock:
                    done = progress.done
                if done != reported:
                    on_progress(done)
                    reported = done
                if cancelled():
                    future.cancel()
                    with contextlib.suppress(Exception):  # the cancellation itself
                        future.result()
                    raise Cancelled(f"upload of {key} cancelled")
            try:
                future.result()
            except (ClientError, BotoCoreError) as exc:
                raise _error(exc, f"upload {key} to {bucket}") from exc
            on_progress(size)
    finally:
        manager.shutdown()


def list_objects(s3: Any, region: str, bucket: str, prefix: str) -> list[StoredObject]:
    """Every object under a prefix; empty when the bucket does not exist."""
    objects: list[StoredObject] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                objects.append(
                    StoredObject(
                        region, bucket, item["Key"], int(item["Size"]), item.get("LastModified")
                    )
                )
    except ClientError as exc:
        if _code(exc) == "NoSuchBucket":
            return []
        raise _error(exc, f"list {bucket}/{prefix} in {region}") from exc
    except BotoCoreError as exc:
        raise _error(exc, f"list {bucket}/{prefix} in {region}") from exc
    return objects


def delete_object(s3: Any, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) not in ("NoSuchKey", "NoSuchBucket", "404"):
            raise _error(exc, f"delete {bucket}/{key}") from exc
    except BotoCoreError as exc:
        raise _error(exc, f"delete {bucket}/{key}") from exc


def abort_uploads(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Abort unfinished multipart uploads under a prefix (their parts are billed storage)."""
    aborted: list[str] = []
    try:
        listing = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    except ClientError as exc:
        if _code(exc) == "NoSuchBucket":
            return aborted
        raise _error(exc, f"list unfinished uploads in {bucket}") from exc
    except BotoCoreError as exc:
        raise _error(exc, f"list unfinished uploads in {bucket}") from exc
    for upload_ in listing.get("Uploads", []) or []:
        try:
            s3.abort_multipart_upload(
                Bucket=bucket, Key=upload_["Key"], UploadId=upload_["UploadId"]
            )
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                raise _error(exc, f"abort upload of {upload_['Key']}") from exc
        aborted.append(upload_["Key"])
    return aborted


def delete_prefix(s3: Any, region: str, bucket: str, prefix: str) -> list[str]:
    """Delete every object (and unfinished upload) under a prefix; return the keys."""
    keys = [obj.key for obj in list_objects(s3, region, bucket, prefix)]
    for key in keys:
        delete_object(s3, bucket, key)
    abort_uploads(s3, bucket, prefix)
    return keys
