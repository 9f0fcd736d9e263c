"""The fetch stage: the upstream image (resolved, downloaded or reused from the cache, checked),
or for an InstantApp its base image's version. The work is in builds.fetch."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from builds import fetch, upstream
from builds.choices import StageName
from builds.models import Build
from builds.stages import files
from builds.stages.context import StageContext, StageFailed
from builds.store import key_for_cache
from catalog.models import ImageVersion

NAME = StageName.FETCH
NEEDS: tuple[str, ...] = ()


def run(ctx: StageContext) -> dict:
    image = ctx.build.image
    if not image.is_os:
        return _fetch_base_version(ctx)
    source = image.sources.filter(arch=ctx.build.arch).first()
    if source is None:
        raise StageFailed(f"{image.label} has no upstream source for {ctx.build.arch}.")
    spec = upstream.SourceSpec.from_model(source)
    ctx.log(f"Resolving channel {source.channel_url}")
    try:
        result = fetch.fetch(
            spec,
            cache=files.download_cache(),
            allowed_hosts=settings.UPSTREAM_ALLOWED_HOSTS,
            log=ctx.log,
            progress=lambda done, total: ctx.progress(done, total, "bytes"),
            cancelled=ctx.cancelled,
        )
    except fetch.FetchError as exc:
        raise StageFailed(str(exc)) from exc
    Build.objects.filter(pk=ctx.build.pk).update(
        upstream_url=result.url,
        upstream_serial=result.serial,
        upstream_checksum=f"{result.checksum_algorithm}:{result.checksum}",
    )
    files.save(ctx, Path(result.path), key_for_cache(result.sha256))
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


def outputs_exist(outputs: dict) -> bool:
    """The fetched file is here, or restored from the artefact store into the cache."""
    return files.file_usable(NAME, outputs, "path", files.restore_fetched)


def _fetch_base_version(ctx: StageContext) -> dict:
    """InstantApps start from their base image's latest released version (before the base
    has a release: its latest built version), never from upstream."""
    base = ctx.build.image.base_image
    if base is None:  # Image.clean() refuses an InstantApp without one
        raise StageFailed(f"The InstantApp {ctx.build.image.label} has no base image.")
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
    if not Path(chosen.artefact_path).exists() and not files.restore_artefact(
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
