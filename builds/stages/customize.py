"""The customize stage: the recipe's steps applied, in one libguestfs appliance session, to a
copy-on-write overlay on the fetched file. The work is in builds.customize."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from django.conf import settings

from builds import customize, recipe_secrets
from builds.choices import StageName
from builds.stages import files
from builds.stages.context import StageContext, StageFailed
from catalog import recipes
from cloud.cancel import Cancelled

NAME = StageName.CUSTOMIZE
NEEDS: tuple[str, ...] = (StageName.FETCH,)


def run(ctx: StageContext) -> dict:
    fetched = ctx.outputs_of(StageName.FETCH)
    source = Path(fetched["path"])
    if not source.exists() and fetched.get("sha256") and not fetched.get("base_version_id"):
        # Restored from the artefact store into this machine's cache, under its own folder.
        source = files.download_cache().lookup(fetched["sha256"]) or source
    steps = [s.as_dict() for s in ctx.build.image.steps.filter(enabled=True)]
    secrets = _secrets_for(steps)
    ctx.secrets.update(secrets)
    folder = files.work_dir(ctx.build)
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
    except Cancelled:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    except customize.CustomizeError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise StageFailed(str(exc)) from exc
    return {
        "work_path": str(disk),
        "manifest": result.manifest,
        "upstream_manifest": result.upstream_manifest,
        "os_info": result.os_info,
        "recipe": steps,
    }


def outputs_exist(outputs: dict) -> bool:
    """The work disk is local scratch, never stored: usable only on the machine that made it
    (a takeover elsewhere runs customize again from the fetched file)."""
    return files.file_usable(NAME, outputs, "work_path")


def _secrets_for(steps: list[dict]) -> dict[str, str]:
    names: set[str] = set()
    for step in steps:
        names |= recipes.secret_names(step.get("params") or {})
    try:
        return recipe_secrets.resolve(names)
    except recipe_secrets.SecretError as exc:
        raise StageFailed(str(exc)) from None
