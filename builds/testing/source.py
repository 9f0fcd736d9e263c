"""The source server: one server from the image that the copying checks take their copies of.

Cold snapshot, Hot snapshot and Backup each need a server with a file written on it, a copy
of that server (a snapshot of its root volume while it runs or once it is stopped, a backup
image) and a new server booted from the copy, where the file must be. Boots are the
expensive part, so these checks share one source server: the first of them to ask boots it,
writes one file per check, makes every check's copy in the registry's order (the copies of
the running server first, then it powers the server off for the others) and deletes it. Each
check then boots a server from its own copy and reads its file there. The runner queues the
checks that would only wait for their copy behind the checks that do not use the source.

A check takes part by declaring `SOURCE_STATE` ("running" or "stopped") and
`capture(ctx, server_id)`, which makes its copy (recording what it creates under the
check's name) and returns it; its `run(ctx)` gets it back from `ctx.captured()`.

If the source server cannot boot, every one of these checks fails with that reason; a copy
that fails fails its own check only. The source server is resource owner SOURCE in the
ledger: kept, with "keep resources on failure", when one of its checks failed before it was
deleted.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from builds.testing import registry
from builds.testing.harness import SOURCE, CheckContext, Harness
from builds.testing.outcomes import CheckFailed
from cloud.cancel import Cancelled
from cloud.retries import CloudError

WAIT_STEP = 0.5


@dataclass(frozen=True)
class Capture:
    """One check's copy of the source server, and the file it must find on it."""

    path: str
    token: str
    copy: Any


class Source:
    """The run's source server for `checks` (in capture order), made on first demand."""

    def __init__(self, harness: Harness, checks: list[str]) -> None:
        self.harness = harness
        self.checks = list(checks)
        self.maker = ""  # the check whose thread makes the copies
        self._lock = threading.Lock()
        self._tokens = {name: uuid.uuid4().hex for name in self.checks}
        self._copies: dict[str, Future[Capture]] = {name: Future() for name in self.checks}

    def captured(self, ctx: CheckContext) -> Capture:
        """The copy for `ctx`'s check: made now, with every other one, by the first caller;
        waited for (cancel-aware) by the others."""
        with self._lock:
            make = not self.maker
            if make:
                self.maker = ctx.name
        if make:
            self._make_all()
        else:
            ctx.log(f"waiting for its copy of the source server (made by {self.maker})")
        copy = self._copies[ctx.name]
        while not copy.done():
            ctx.sleep(WAIT_STEP)  # raises Cancelled once the run is cancelled
        return copy.result()

    # --- making the copies ------------------------------------------------------------------
    def _make_all(self) -> None:
        ctx = self.harness.context(SOURCE)
        try:
            server_id = self._boot(ctx)
        except BaseException as exc:
            self._fail_rest(exc)
            return
        stopped = False
        for name in self.checks:
            module = registry.get_source_check(name)
            copy = self._copies[name]
            try:
                if module.SOURCE_STATE == "stopped" and not stopped:
                    ctx.power_off(server_id)
                    stopped = True
                made = module.capture(self.harness.context(name), server_id)
                copy.set_result(Capture(self._path(name), self._tokens[name], made))
            except (Cancelled, KeyboardInterrupt) as exc:
                self._fail_rest(exc)
                return
            except Exception as exc:
                copy.set_exception(exc)
        self._release(ctx, server_id)

    def _boot(self, ctx: CheckContext) -> str:
        try:
            server_id = ctx.create_server("source")
            script = " && ".join(
                f"echo {token} > {self._path(name)}" for name, token in self._tokens.items()
            )
            ctx.ssh(server_id, f"{script} && sync")
        except (CheckFailed, CloudError) as exc:
            raise CheckFailed(f"the source server could not be prepared: {exc}") from exc
        return server_id

    def _release(self, ctx: CheckContext, server_id: str) -> None:
        """Delete the source server now (its VM stops using the host's CPU while the checks
        boot their copies), unless a copy failed and the run keeps resources on failure."""
        failed = [n for n in self.checks if self._copies[n].exception() is not None]
        if failed and self.harness.spec.keep_on_failure:
            return
        try:
            ctx.release(server_id)
        except (Cancelled, CheckFailed, CloudError) as exc:
            ctx.log(f"the source server goes at the end of the run instead: {exc}")

    def _fail_rest(self, exc: BaseException) -> None:
        for copy in self._copies.values():
            if not copy.done():
                copy.set_exception(exc)

    @staticmethod
    def _path(name: str) -> str:
        return f"/root/factory-check-{name.replace('_', '-')}"


def boot_copy(
    ctx: CheckContext,
    capture: Capture,
    what: str,
    *,
    image: str | None = None,
    base_snapshot: str | None = None,
) -> None:
    """Boot a server from a copy (`image=` or `base_snapshot=`): the file is there."""
    copy = ctx.create_server(f"{_short(ctx)}-copy", image=image, base_snapshot=base_snapshot)
    if ctx.read_marker(copy, capture.path) != capture.token:
        raise CheckFailed(
            f"the file written before the {what} is missing on the server booted from it"
        )


def snapshot_root(ctx: CheckContext, server_id: str) -> Any:
    """A snapshot of the server's root volume (a `capture` for the snapshot checks): an
    Instance snapshot of a local root, a Block snapshot of a Block root."""
    return ctx.snapshot_root(server_id, f"{_short(ctx)}-snap")


def boot_from_snapshot(ctx: CheckContext, what: str) -> None:
    """Boot a server whose root volume is made from this check's snapshot (a Block volume
    from a Block snapshot on Block Storage): the file is there."""
    capture = ctx.captured()
    boot_copy(ctx, capture, what, base_snapshot=capture.copy.id)


def _short(ctx: CheckContext) -> str:
    """The first word of the check's name ("hot" for hot_snapshot), for resource names."""
    return ctx.name.split("_")[0]
