"""Where a build's files live, and their copies in the artefact store.

A stage's file (the fetched upstream image, the finalized artefact) may be missing on the
machine that needs it: another machine did the stage, or the cache evicted the file. The
artefact store may have a copy; `restore_fetched` and `restore_artefact` bring it back.
The customize stage's work file is local scratch and never stored.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from builds.cache import CacheError, DownloadCache, _sha256_of
from builds.models import Build
from builds.stages.context import StageContext, StageFailed
from builds.store import LocalStore, artefact_store, key_for_artefact_path, key_for_cache
from catalog.models import ImageVersion
from cloud.retries import CloudError

log = logging.getLogger(__name__)


def work_dir(build: Build) -> Path:
    return Path(settings.ARTEFACT_DIR) / "work" / f"build-{build.pk}"


def artefact_path(build: Build) -> Path:
    return Path(settings.ARTEFACT_DIR) / build.image.label / build.arch / f"build-{build.pk}.qcow2"


def download_cache() -> DownloadCache:
    return DownloadCache(
        Path(settings.DOWNLOAD_CACHE_DIR), max_bytes=settings.DOWNLOAD_CACHE_MAX_BYTES
    )


def file_usable(
    stage: str, outputs: dict, key: str, restore: Callable[[dict], bool] | None = None
) -> bool:
    """Whether the file a done stage recorded under `key` is here, or could be brought back
    from the artefact store with `restore` (None: a local file that is never stored)."""
    if not (outputs and outputs.get(key)):
        return False
    if Path(outputs[key]).exists():
        return True
    if restore is None:
        return False
    try:
        return restore(outputs)
    except Exception as exc:  # a store that cannot answer: the stage simply runs again
        log.warning("%s outputs not restored from the artefact store: %s", stage, exc)
    return False


def restore_fetched(outputs: dict) -> bool:
    """Bring a fetched file back from the store into the DownloadCache (re-hashed there, with
    its upstream digest, so the cache index stays right); `outputs["path"]` follows it."""
    if outputs.get("base_version_id"):
        return restore_artefact(outputs)  # a base version's artefact, stored by its build
    sha256 = str(outputs.get("sha256") or "")
    store = artefact_store()
    if not sha256 or isinstance(store, LocalStore):
        return False
    cache = download_cache()
    with cache.partial_lock(f"restore-{sha256}") as tmp:
        final = cache.lookup(sha256)  # another process may have restored it meanwhile
        if final is None:
            if not store.restore(key_for_cache(sha256), tmp):
                return False
            algorithm, _, digest = str(outputs.get("checksum") or "").partition(":")
            try:
                final = cache.put(
                    tmp,
                    sha256,
                    url=outputs.get("url", ""),
                    upstream={algorithm: digest} if algorithm and digest else None,
                    trust_digest=False,
                )
            except CacheError as exc:
                log.warning("fetched file not restored: %s", exc)
                return False
    if str(final) != outputs["path"]:
        outputs["path"] = str(final)  # another cache folder on this machine
    return True


def restore_artefact(outputs: dict) -> bool:
    """Bring an artefact back from the store to its recorded path, checking its SHA-256."""
    store = artefact_store()
    path = Path(outputs["path"])
    key = outputs.get("store_key") or key_for_artefact_path(path)
    if not key or isinstance(store, LocalStore) or not store.restore(key, path):
        return False
    expected = str(outputs.get("sha256") or "").lower()
    if expected and _sha256_of(path) != expected:
        log.warning("restored %s does not match its sha256: discarded", key)
        path.unlink(missing_ok=True)
        return False
    return True


def save(ctx: StageContext, path: Path, key: str) -> None:
    """Keep a copy of a stage's file in the artefact store (nothing more for the local one)."""
    store = artefact_store()
    if isinstance(store, LocalStore):
        return
    try:
        store.save(path, key)
    except CloudError as exc:
        raise StageFailed(f"Could not save {key} to the artefact store: {exc}") from exc
    ctx.log(f"Saved to the artefact store as {key}")


def discard_work(build: Build) -> None:
    """Remove what a cancelled or abandoned build left: its work folder, and an artefact no
    version points at."""
    shutil.rmtree(work_dir(build), ignore_errors=True)
    path = artefact_path(build)
    if path.exists() and not ImageVersion.objects.filter(artefact_path=str(path)).exists():
        path.unlink(missing_ok=True)
