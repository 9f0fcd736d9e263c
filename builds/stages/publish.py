"""The publish stage: the version finalize created becomes an instance image in every enabled
zone, once per storage type of the image, and is marked published. The work (uploads,
imports, per-zone results) is in builds.publish."""

from __future__ import annotations

from pathlib import Path

from builds import publish
from builds.choices import StageName
from builds.stages.context import StageContext, StageFailed
from catalog.choices import VersionState
from catalog.models import ImageVersion, Zone

NAME = StageName.PUBLISH
NEEDS: tuple[str, ...] = (StageName.FINALIZE,)


def run(ctx: StageContext) -> dict:
    finalized = ctx.outputs_of(StageName.FINALIZE)
    version = ImageVersion.objects.select_related("image").get(pk=finalized["version_id"])
    try:
        images = publish.publish(
            build_id=ctx.build.pk,
            version=version,
            artefact=Path(finalized["path"]),
            zones=Zone.objects.filter(enabled=True),
            log=ctx.log,
            progress=ctx.progress,
            cancelled=ctx.cancelled,
        )
    except publish.PublishError as exc:
        raise StageFailed(str(exc)) from exc
    ImageVersion.objects.filter(pk=version.pk, state=VersionState.BUILT).update(
        state=VersionState.PUBLISHED
    )
    zones: dict[str, dict[str, dict[str, str]]] = {}
    for li in images:
        zones.setdefault(li.zone.code, {})[li.storage_type] = {
            "image_id": li.provider_image_id,
            "snapshot_id": li.snapshot_id,
        }
    return {"version_id": version.pk, "zones": zones}


def outputs_exist(outputs: dict) -> bool:
    """What publishing created lives in the cloud, recorded as LocalImages."""
    return bool(outputs)
