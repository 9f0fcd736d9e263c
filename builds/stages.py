"""The stages of a build as functions of its StageContext: fetch, customize, finalize.

Each one reads the outputs recorded by the stages before it and returns its own outputs;
the heavy lifting is in builds.fetch, builds.customize and builds.finalize.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from builds import recipe_secrets
from builds.choices import StageName
from builds.models import Build
from builds.pipeline import Cancelled, StageContext, StageFailed
from builds.store import (
    LocalStore,
    artefact_store,
    key_for_artefact,
    key_for_artefact_path,
    key_for_cache,
)
from catalog import recipes
from catalog.choices import VersionState
from catalog.models import ImageVersion

log = logging.getLogger(__name__)


def work_dir(build: Build) -> Path:
    return Path(settings.ARTEFACT_DIR) / "work" / f"build-{build.pk}"


def artefact_path(build: Build) -> Path:
    return Path(settings.ARTEFACT_DIR) / build.image.label / build.arch / f"build-{build.pk}.qcow2"


def outputs_exist(stage: str, outputs: dict) -> bool:
    """Whether a done stage's outputs can still be used by the stages after it."""
    if stage in (StageName.PUBLISH, StageName.TEST):
        return bool(outputs)  # what it created lives in the cloud, recorded as LocalImages
    key = {"fetch": "path", "customize": "work_path", "finalize": "path"}.get(stage)
    if not (outputs and key and outputs.get(key)):
        return False
    if Path(outputs[key]).exists():
        return True
    # Missing here (another machine did the stage, or the cache evicted the file): the
    # artefact store may have a copy. The customize stage's work file is local scratch and
    # never stored: a takeover on another machine runs customize again from the fetched file.
    try:
        if stage == StageName.FETCH:
            return _restore_fetched(outputs)
        if stage == StageName.FINALIZE:
            return _restore_artefact(outputs)
    except Exception as exc:  # a store that cannot answer: the stage simply runs again
        log.warning("%s outputs not restored from the artefact store: %s", stage, exc)
    return False


def _restore_fetched(outputs: dict) -> bool:
    """Bring a fetched file back from the store into the DownloadCache (re-hashed there, with
    its upstream digest, so the cache index stays right); `outputs["path"]` follows it."""
    from builds.cache import CacheError

    if outputs.get("base_version_id"):
        return _restore_artefact(outputs)  # a base version's artefact, stored by its build
    sha256 = str(outputs.get("sha256") or "")
    store = artefact_store()
    if not sha256 or isinstance(store, LocalStore):
        return False
    cache = _download_cache()
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


def _restore_artefact(outputs: dict) -> bool:
    """Bring an artefact back from the store to its recorded path, checking its SHA-256."""
    from builds.cache import _sha256_of

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


def _save(ctx: StageContext, path: Path, key: str) -> None:
    """Keep a copy of a stage's file in the artefact store (nothing more for the local one)."""
    from cloud.retries import CloudError

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


def _download_cache():
    from builds.cache import DownloadCache

    return DownloadCache(
        Path(settings.DOWNLOAD_CACHE_DIR), max_bytes=settings.DOWNLOAD_CACHE_MAX_BYTES
    )


# --- fetch ------------------------------------------------------------------------------------


def fetch_stage(ctx: StageContext) -> dict:
    image = ctx.build.image
    if not image.is_os:
        return _fetch_base_version(ctx)
    from builds import download, fetch, upstream

    source = image.sources.filter(arch=ctx.build.arch).first()
    if source is None:
        raise StageFailed(f"{image.label} has no upstream source for {ctx.build.arch}.")
    spec = upstream.SourceSpec.from_model(source)
    ctx.log(f"Resolving channel {source.channel_url}")
    try:
        result = fetch.fetch(
            spec,
            cache=_download_cache(),
            allowed_hosts=settings.UPSTREAM_ALLOWED_HOSTS,
            log=ctx.log,
            progress=lambda done, total: ctx.progress(done, total, "bytes"),
            cancelled=ctx.cancelled,
        )
    except download.Cancelled as exc:
        raise Cancelled(str(exc)) from exc
    except fetch.FetchError as exc:
        raise StageFailed(str(exc)) from exc
    Build.objects.filter(pk=ctx.build.pk).update(
        upstream_url=result.url,
        upstream_serial=result.serial,
        upstream_checksum=f"{result.checksum_algorithm}:{result.checksum}",
    )
    _save(ctx, Path(result.path), key_for_cache(result.sha256))
    ctx.log(
        f"{'Reused cached' if result.from_cache else 'Downloaded'} {result.filename} "
        f"(serial {result.serial}, {result.size} bytes, sha256 {result.sha256})"
    )
    return {
        "path": str(result.path),
        "url": result.url,
        "serial": result.serial,
        "sha256": result.sha256,
        "size": result.size,
        "checksum": f"{result.checksum_algorithm}:{result.checksum}",
    }


def _fetch_base_version(ctx: StageContext) -> dict:
    """InstantApps start from their base image's latest released version (before the base
    has a release: its latest built version), never from upstream."""
    base = ctx.build.image.base_image
    versions = ImageVersion.objects.filter(image=base, arch=ctx.build.arch).exclude(
        artefact_path=""
    )
    chosen = (
        versions.filter(released_at__isnull=False).order_by("-released_at").first()
        or versions.order_by("-created_at", "-id").first()
    )
    if chosen is None:
        raise StageFailed(
            f"The base image {base.label} has no {ctx.build.arch} version yet: build it first."
        )
    if not Path(chosen.artefact_path).exists() and not _restore_artefact(
        {"path": chosen.artefact_path, "sha256": chosen.artefact_sha256}
    ):
        raise StageFailed(f"The artefact of {chosen} is missing at {chosen.artefact_path}.")
    ctx.log(f"Starting from base version {chosen} ({chosen.get_state_display().lower()})")
    return {
        "path": chosen.artefact_path,
        "sha256": chosen.artefact_sha256,
        "base_version_id": chosen.pk,
        "serial": chosen.upstream_serial,
        "url": chosen.upstream_url,
    }


# --- customize --------------------------------------------------------------------------------


def _secrets_for(steps: list[dict]) -> dict[str, str]:
    names: set[str] = set()
    for step in steps:
        names |= recipes.secret_names(step.get("params") or {})
    try:
        return recipe_secrets.resolve(names)
    except recipe_secrets.SecretError as exc:
        raise StageFailed(str(exc)) from None


def customize_stage(ctx: StageContext) -> dict:
    from builds import customize

    fetched = ctx.outputs_of(StageName.FETCH)
    source = Path(fetched["path"])
    if not source.exists() and fetched.get("sha256") and not fetched.get("base_version_id"):
        # Restored from the artefact store into this machine's cache, under its own folder.
        source = _download_cache().lookup(fetched["sha256"]) or source
    steps = [s.as_dict() for s in ctx.build.image.steps.filter(enabled=True)]
    secrets = _secrets_for(steps)
    ctx.secrets.update(secrets)
    folder = work_dir(ctx.build)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    disk = folder / "disk.qcow2"
    # A copy-on-write overlay: the cached upstream file stays pristine, and a retry starts
    # again from it.
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(source), str(disk)],
        check=True,
        capture_output=True,
    )
    ctx.log(f"Customizing with {len(steps)} step(s) in one appliance session")
    try:
        result = customize.customize(
            disk,
            steps,
            log=ctx.log,
            progress=lambda done, total: ctx.progress(done, total, "steps"),
            cancelled=ctx.cancelled,
            secrets=secrets,
            files_dir=Path(settings.FILES_DIR),
            allowed_hosts=settings.UPSTREAM_ALLOWED_HOSTS,
            step_timeout=settings.STEP_TIMEOUT_SECONDS,
            memsize_mb=settings.GUESTFS_MEMSIZE_MB,
        )
    except customize.Cancelled as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise Cancelled(str(exc)) from exc
    except customize.CustomizeError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise StageFailed(str(exc)) from exc
    return {
        "work_path": str(disk),
        "manifest": result.manifest,
        "os_info": result.os_info,
        "recipe": steps,
    }


# --- finalize ---------------------------------------------------------------------------------


def finalize_stage(ctx: StageContext) -> dict:
    from builds import finalize

    build = ctx.build
    fetched = ctx.outputs_of(StageName.FETCH)
    customized = ctx.outputs_of(StageName.CUSTOMIZE)
    dest = artefact_path(build)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ctx.log("Converting to a compressed QCOW2 without backing file")
    try:
        result = finalize.finalize(
            Path(customized["work_path"]), dest, log=ctx.log, cancelled=ctx.cancelled
        )
    except finalize.Cancelled as exc:
        raise Cancelled(str(exc)) from exc
    except (RuntimeError, OSError) as exc:
        raise StageFailed(f"Final conversion failed: {exc}") from exc
    store_key = key_for_artefact(build.image.label, build.arch, build.pk)
    _save(ctx, dest, store_key)  # before the version exists: a version is always stored
    version = _create_version(build, fetched, customized, dest, result.size, result.sha256)
    shutil.rmtree(work_dir(build), ignore_errors=True)
    ctx.log(f"Version {version.name} created ({result.size} bytes, sha256 {result.sha256})")
    return {
        "path": str(dest),
        "size": result.size,
        "sha256": result.sha256,
        "version_id": version.pk,
        "store_key": store_key,
    }


def _create_version(
    build: Build, fetched: dict, customized: dict, path: Path, size: int, sha256: str
) -> ImageVersion:
    if build.version_id:
        return build.version  # type: ignore[return-value]
    for _attempt in range(5):
        try:
            with transaction.atomic():
                version = ImageVersion.objects.create(
                    image=build.image,
                    arch=build.arch,
                    name=ImageVersion.next_name(build.image, build.arch),
                    state=VersionState.BUILT,
                    base_version_id=fetched.get("base_version_id"),
                    upstream_url=fetched.get("url", ""),
                    upstream_serial=fetched.get("serial", ""),
                    upstream_checksum=fetched.get("checksum", ""),
                    artefact_path=str(path),
                    artefact_size=size,
                    artefact_sha256=sha256,
                    manifest=customized.get("manifest", []),
                    recipe=customized.get("recipe", []),
                )
                Build.objects.filter(pk=build.pk).update(
                    version=version,
                    artefact_path=str(path),
                    artefact_size=size,
                    artefact_sha256=sha256,
                )
            build.refresh_from_db()
            return version
        except IntegrityError:
            continue  # another build of the same day took the name first
    raise StageFailed("Could not name the new version (too many builds at once).")
