"""The finalize stage: the customized disk converted to a compressed QCOW2 without backing
file, kept in the artefact store, and recorded as a new ImageVersion. The conversion is in
builds.finalize."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.db import IntegrityError, transaction

from builds import finalize
from builds.choices import StageName
from builds.models import Build
from builds.signals import version_recorded
from builds.stages import files
from builds.stages.context import StageContext, StageFailed
from builds.store import key_for_artefact
from catalog.choices import VersionState
from catalog.models import ImageVersion

NAME = StageName.FINALIZE
# Finalize converts customize's disk, a copy-on-write overlay on the fetched file: it reads
# both.
NEEDS: tuple[str, ...] = (StageName.FETCH, StageName.CUSTOMIZE)

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict:
    build = ctx.build
    fetched = ctx.outputs_of(StageName.FETCH)
    customized = ctx.outputs_of(StageName.CUSTOMIZE)
    dest = files.artefact_path(build)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ctx.log("Converting to a compressed QCOW2 without backing file")
    try:
        result = finalize.finalize(
            Path(customized["work_path"]), dest, log=ctx.log, cancelled=ctx.cancelled
        )
    except (RuntimeError, OSError) as exc:
        raise StageFailed(f"Final conversion failed: {exc}") from exc
    store_key = key_for_artefact(build.image.label, build.arch, build.pk)
    files.save(ctx, dest, store_key)  # before the version exists: a version is always stored
    version = _create_version(build, fetched, customized, dest, result.size, result.sha256)
    shutil.rmtree(files.work_dir(build), ignore_errors=True)
    ctx.log(f"Version {version.name} created ({result.size} bytes, sha256 {result.sha256})")
    try:  # the advisories app matches the manifest; its failure never fails the build
        version_recorded.send(sender=ImageVersion, version=version)
    except Exception:
        log.exception("build %s: a listener of version_recorded failed", build.pk)
    return {
        "path": str(dest),
        "size": result.size,
        "sha256": result.sha256,
        "version_id": version.pk,
        "store_key": store_key,
    }


def outputs_exist(outputs: dict) -> bool:
    """The artefact is here, or restored from the artefact store (its SHA-256 checked)."""
    return files.file_usable(NAME, outputs, "path", files.restore_artefact)


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
