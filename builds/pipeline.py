"""Running a build: its stages in order, each resumable, with live log, progress and cancel.

Each stage is a module of `builds.stages`, run in the order of `builds.stages.registry`: its
`run(ctx)` reads what earlier stages recorded (their `outputs`) and records its own. A stage
already done is skipped, so that Retry resumes at the stage that failed and a worker taking
over a dead worker's build continues it.

A done stage runs again only when a stage that still has to run needs its outputs
(its `NEEDS`) and they are gone, or when a stage it needs runs again (its outputs were made
from the old ones). So a takeover after finalize resumes at publish with the finalized artefact,
although customize's scratch disk went away with finalize: nothing after finalize needs it.
"""

from __future__ import annotations

import copy
import logging
import threading

from django.db import close_old_connections
from django.utils import timezone

from builds.choices import BuildState, StageName, StageState
from builds.models import Build, Stage
from builds.publish import discard
from builds.signals import build_failed
from builds.stages import registry
from builds.stages.context import Heartbeat, StageContext, StageFailed
from builds.stages.files import discard_work
from cloud.cancel import Cancelled
from cloud.retries import CloudError

log = logging.getLogger(__name__)


def _stages_to_run(stages: list[Stage]) -> dict[str, str]:
    """The stages this run must run, each with why a done one runs again ("" when it is
    simply not done). Outputs are looked at (and restored) only when a stage needs them."""
    needs = registry.needs()
    plan = {s.name: "" for s in stages if s.state != StageState.DONE}
    usable: dict[str, bool] = {}

    def why_again(stage: Stage) -> str:
        remade = [n for n in needs.get(stage.name, ()) if n in plan]
        if remade:
            return f"it reads what {_label(remade[0])} makes, which runs again"
        needed_by = [n for n in plan if stage.name in needs.get(n, ())]
        if not needed_by:
            return ""
        if stage.name not in usable:
            usable[stage.name] = _outputs_still_valid(stage)
        if usable[stage.name]:
            return ""
        return f"its outputs are gone and {_label(needed_by[0])} needs them"

    changed = True
    while changed:  # a stage that runs again may make an earlier or a later one run again
        changed = False
        for stage in stages:
            if stage.name not in plan and (reason := why_again(stage)):
                plan[stage.name] = reason
                changed = True
    return plan


def _label(name: str) -> str:
    return StageName(name).label


def _start_stage(stage: Stage) -> None:
    Stage.objects.filter(pk=stage.pk).update(
        state=StageState.RUNNING, started_at=timezone.now(), finished_at=None, error=""
    )
    stage.refresh_from_db()


def _end_stage(stage: Stage, state: str, *, outputs: dict | None = None, error: str = "") -> None:
    values: dict = {"state": state, "finished_at": timezone.now(), "error": error}
    if outputs is not None:
        values["outputs"] = outputs
    Stage.objects.filter(pk=stage.pk).update(**values)


def run(build: Build, worker: str, secrets: dict[str, str] | None = None) -> str:
    """Run the build's remaining stages; return its final state.

    The caller has claimed the build. Nothing here raises: every outcome is recorded on
    the build and its stages.
    """
    build.ensure_stages()
    lost = threading.Event()
    heartbeat = Heartbeat(build, worker, lost)
    heartbeat.start()
    try:
        stages = list(build.stages.order_by("position"))
        plan = _stages_to_run(stages)
        for stage in stages:
            if stage.name not in plan:
                continue
            ctx = StageContext(build, stage, worker, dict(secrets or {}), lost_claim=lost)
            if ctx.cancelled():
                raise Cancelled("cancelled")
            build.enter_stage(stage.name)
            _start_stage(stage)
            ctx.log(f"{stage.get_name_display()} started on {worker}")
            if plan[stage.name]:
                ctx.log(f"Done earlier, running again: {plan[stage.name]}")
            try:
                outputs = registry.get(stage.name).run(ctx)
            except Cancelled:
                _end_stage(stage, StageState.CANCELLED, error="Cancelled.")
                raise
            except StageFailed as exc:
                message = ctx.mask(str(exc))
                ctx.log(f"FAILED: {message}")
                _end_stage(stage, StageState.FAILED, error=message)
                build.finish(BuildState.FAILED, stage=stage.name, reason=message)
                _alert_failure(build)
                return build.state
            except Exception as exc:  # an unexpected error still ends the stage cleanly
                log.exception("build %s stage %s crashed", build.pk, stage.name)
                message = ctx.mask(f"Unexpected error in {stage.name}: {exc}")
                ctx.log(f"FAILED: {message}")
                _end_stage(stage, StageState.FAILED, error=message)
                build.finish(BuildState.FAILED, stage=stage.name, reason=message)
                _alert_failure(build)
                return build.state
            _end_stage(stage, StageState.DONE, outputs=outputs)
            ctx.log(f"{stage.get_name_display()} done")
        build.finish(BuildState.DONE)
    except Cancelled:
        if lost.is_set() and not build.cancel_is_requested():
            # Another worker took the build over; it is theirs to finish.
            log.warning("build %s: claim lost to another worker", build.pk)
            return build.state
        _discard_cancelled(build)
        build.finish(BuildState.CANCELLED, reason="Cancelled by a user.")
    finally:
        heartbeat.stop()
        close_old_connections()
    return build.state


def _alert_failure(build: Build) -> None:
    """Announce the failure (`build_failed`: lifecycle's alerts tell the team); a listener
    that fails never changes the outcome."""
    try:
        build_failed.send(sender=Build, build=build)
    except Exception:
        log.exception("build %s: failure alert not sent", build.pk)


def _discard_cancelled(build: Build) -> None:
    """A cancelled build leaves nothing: work files, artefact, and what it published."""
    discard_work(build)
    if build.stages.filter(name=StageName.PUBLISH).exclude(started_at=None).exists():
        try:
            discard(build.pk)
        except CloudError as exc:
            # The janitor removes what is left once it is old enough.
            log.warning("build %s: cloud clean-up incomplete: %s", build.pk, exc)


def _outputs_still_valid(stage: Stage) -> bool:
    """Whether the files a done stage produced still exist (restored from the artefact store
    when this machine does not have them), for a later stage that needs them."""
    recorded = copy.deepcopy(stage.outputs)
    valid = registry.outputs_exist(stage.name, stage.outputs)
    if valid and stage.outputs != recorded:
        # Restored to another place on this machine: later stages read the new path.
        Stage.objects.filter(pk=stage.pk).update(outputs=stage.outputs)
    return valid
