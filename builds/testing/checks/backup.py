"""Backup: the backup action makes an image of a server, and a server booted from that image
has the data written before it. The server is the run's source server, running (see
`source`).

The action names its image in the task's `href_result`; the image and its snapshots are
written in the ledger at once and tagged like everything else the run makes (the action
itself tags nothing), so that the janitor finds them if the run could not delete them. A
server with a Block root is backed up to Block snapshots (`sbs_snapshot` in the image's
volumes): those are recorded, tagged and deleted through the Block API; the image must not
hold an Instance snapshot of the Block root.
"""

from __future__ import annotations

from typing import Any

from builds.testing.harness import CheckContext
from builds.testing.outcomes import CheckFailed
from builds.testing.source import boot_copy
from cloud import waiters
from cloud.retries import CloudError

NAME: str = "backup"
LABEL: str = "Backup"
SHARED: bool = False
SOURCE_STATE: str = "running"


def capture(ctx: CheckContext, server_id: str) -> str:
    """Back the server up; return the id of the image, once available."""
    api = ctx.instance
    name = ctx.resource_name("backup")
    task = ctx.call(
        api.server_action,
        what=f"backup server {ctx.label(server_id)}",
        zone=ctx.zone,
        server_id=server_id,
        action="backup",
        name=name,
    ).task
    href = str(getattr(task, "href_result", "") or "")
    if not href.strip("/").startswith("images/"):
        raise CheckFailed(f"the backup action did not name the image it made ({href!r})")
    image_id = href.rstrip("/").rsplit("/", 1)[-1]
    ctx.record("image", image_id, name=name)
    image = ctx.call(api.get_image, what=f"get image {image_id}", zone=ctx.zone, image_id=image_id)
    image = image.image
    volumes = [image.root_volume] if image.root_volume else []
    volumes += list((image.extra_volumes or {}).values())
    snapshots = [(_kind(v), v.id) for v in volumes]
    for kind, snapshot_id in snapshots:
        ctx.record(kind, snapshot_id)
    root_kind = snapshots[0][0] if snapshots else ""
    try:
        ctx.call(
            api.update_image, what="tag image", zone=ctx.zone, image_id=image_id, tags=ctx.tags()
        )
        for kind, snapshot_id in snapshots:
            owner = ctx.block if kind == "block_snapshot" else api
            ctx.call(
                owner.update_snapshot,
                what=f"tag {kind.replace('_', ' ')}",
                zone=ctx.zone,
                snapshot_id=snapshot_id,
                tags=ctx.tags(),
            )
    except CloudError as exc:
        ctx.log(f"could not tag the backup's image or snapshots: {exc}")
    wanted = "block_snapshot" if ctx.spec.block else "snapshot"
    if root_kind != wanted:
        where = "a Block snapshot" if ctx.spec.block else "an Instance snapshot"
        raise CheckFailed(
            f"the backup's image {image_id} has no root volume made as {where} "
            f"({root_kind.replace('_', ' ') or 'none'})"
        )
    image = ctx.wait(waiters.wait_for_image, api, ctx.zone, image_id)
    ctx.log(f"image {image_id} is {image.state}")
    return image_id


def _kind(volume: Any) -> str:
    """The ledger kind of one of a backup image's volumes."""
    volume_type = str(getattr(volume, "volume_type", "") or "")
    return "block_snapshot" if volume_type == "sbs_snapshot" else "snapshot"


def run(ctx: CheckContext) -> None:
    capture = ctx.captured()
    boot_copy(ctx, capture, "backup", image=capture.copy)
