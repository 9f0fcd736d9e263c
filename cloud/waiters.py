"""Waiting for instance v1 resources (and Block Storage snapshots) to reach a state.

Instance v1 has no waiters in the Python SDK (and `wait_instance_server` gives up after
half a second), so these poll get_snapshot / get_image / get_server with a growing interval
(CLOUD_POLL_SECONDS up to CLOUD_POLL_MAX_SECONDS), until a deadline, and stop as soon as
`cancelled()` is true. Every poll goes through cloud.retries.call, so a throttled or
unavailable API does not end a wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from cloud.cancel import CancelCheck
from cloud.retries import CloudError, CloudTimeout, call, sleep

# Terminal states that mean failure (the rest of the non-target states are transient).
SNAPSHOT_FAILED = frozenset({"error", "invalid_data"})
IMAGE_FAILED = frozenset({"error"})
BLOCK_SNAPSHOT_FAILED = frozenset({"error", "deleted"})
SERVER_FAILED = frozenset({"locked"})
# A server whose start failed is stopped again (Scaleway and localcloud alike).
SERVER_FALLBACK = frozenset({"stopped"})


def wait_for(
    fetch: Callable[[], Any],
    *,
    state_of: Callable[[Any], str],
    until: Collection[str],
    failed: Collection[str] = (),
    what: str,
    timeout: float,
    cancelled: CancelCheck | None = None,
    reason_of: Callable[[Any], str] | None = None,
    fallback: Collection[str] = (),
    timeout_error: Callable[[Any], CloudError] | None = None,
) -> Any:
    """Poll `fetch()` until `state_of(result)` is in `until`; return that result.

    Raises CloudError when the state is in `failed` (with `reason_of(result)` when the API
    gave one), CloudTimeout past `timeout` seconds, cloud.cancel.Cancelled on cancel.

    `fallback` names the states an action falls back to when it fails (a server whose start
    failed is `stopped` again). Such a state ends the wait as a failure once the resource was
    seen in another state during the wait, at once when the API gave a reason, and otherwise
    after CLOUD_FALLBACK_GRACE_SECONDS (the action may not have been applied yet).

    `timeout_error(last result)`, when given, makes the error raised past the deadline.
    """
    interval = max(0.01, float(settings.CLOUD_POLL_SECONDS))
    ceiling = max(interval, float(settings.CLOUD_POLL_MAX_SECONDS))
    grace = float(settings.CLOUD_FALLBACK_GRACE_SECONDS)
    deadline = time.monotonic() + timeout
    moved = False  # seen in a state other than a fallback one
    fell_back_at: float | None = None
    while True:
        resource = fetch()
        state = str(state_of(resource))
        if state in until:
            return resource
        reason = (reason_of(resource) if reason_of else "") or ""
        if state in failed:
            raise CloudError(f"{what}: ended in state {state}" + (f": {reason}" if reason else ""))
        if state in fallback:
            now = time.monotonic()
            fell_back_at = now if fell_back_at is None else fell_back_at
            if moved or reason or now - fell_back_at >= grace:
                wanted = " or ".join(sorted(until))
                raise CloudError(
                    f"{what}: did not reach {wanted}, back to {state}"
                    + (f" ({reason})" if reason else "")
                )
        else:
            moved, fell_back_at = True, None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if timeout_error is not None:
                raise timeout_error(resource)
            raise CloudTimeout(f"{what}: still {state} after {timeout:g} s")
        sleep(min(interval, remaining), cancelled)
        interval = min(ceiling, interval * 1.5)


@dataclass(frozen=True)
class _SnapshotKind:
    """How one API answers for its snapshots."""

    name: str
    failed: frozenset[str]  # its terminal states that mean failure
    state_of: Callable[[Any], str]
    unwrap: Callable[[Any], Any]  # the snapshot out of get_snapshot's answer


_INSTANCE_SNAPSHOT = _SnapshotKind(
    "snapshot", SNAPSHOT_FAILED, lambda s: s.state, lambda answer: answer.snapshot
)
# BlockV1API.get_snapshot answers the snapshot itself, which names its state `status`.
_BLOCK_SNAPSHOT = _SnapshotKind(
    "block snapshot", BLOCK_SNAPSHOT_FAILED, lambda s: s.status, lambda answer: answer
)


def _wait_for_a_snapshot(
    kind: _SnapshotKind,
    api: Any,
    zone: str,
    snapshot_id: str,
    *,
    timeout: float,
    until: Collection[str],
    cancelled: CancelCheck | None,
) -> Any:
    """Poll a snapshot of either API through `call` until it is in a state of `until`; the
    kind's failed states end the wait."""
    what = f"{kind.name} {snapshot_id} in {zone}"
    return wait_for(
        lambda: kind.unwrap(
            call(
                api.get_snapshot,
                snapshot_id=snapshot_id,
                zone=zone,
                what=f"get {what}",
                cancelled=cancelled,
            )
        ),
        state_of=kind.state_of,
        until=until,
        failed=kind.failed - set(until),
        what=what,
        timeout=timeout,
        cancelled=cancelled,
        reason_of=lambda s: getattr(s, "error_reason", None) or "",
    )


def wait_for_snapshot(
    api: Any,
    zone: str,
    snapshot_id: str,
    *,
    timeout: float,
    until: Collection[str] = ("available",),
    cancelled: CancelCheck | None = None,
) -> Any:
    """Wait for an instance snapshot (an import: importing -> available)."""
    return _wait_for_a_snapshot(
        _INSTANCE_SNAPSHOT,
        api,
        zone,
        snapshot_id,
        timeout=timeout,
        until=until,
        cancelled=cancelled,
    )


def wait_for_block_snapshot(
    api: Any,
    zone: str,
    snapshot_id: str,
    *,
    timeout: float,
    until: Collection[str] = ("available",),
    cancelled: CancelCheck | None = None,
) -> Any:
    """Wait for a Block Storage (SBS) snapshot (an import: creating -> available); `api` is
    a BlockV1API."""
    return _wait_for_a_snapshot(
        _BLOCK_SNAPSHOT, api, zone, snapshot_id, timeout=timeout, until=until, cancelled=cancelled
    )


def wait_for_image(
    api: Any,
    zone: str,
    image_id: str,
    *,
    timeout: float,
    cancelled: CancelCheck | None = None,
) -> Any:
    """Wait for an instance image to be available."""
    what = f"image {image_id} in {zone}"
    return wait_for(
        lambda: (
            call(
                api.get_image, image_id=image_id, zone=zone, what=f"get {what}", cancelled=cancelled
            ).image
        ),
        state_of=lambda i: i.state,
        until=("available",),
        failed=IMAGE_FAILED,
        what=what,
        timeout=timeout,
        cancelled=cancelled,
    )


def wait_for_server(
    api: Any,
    zone: str,
    server_id: str,
    *,
    until: Collection[str],
    timeout: float,
    cancelled: CancelCheck | None = None,
) -> Any:
    """Wait for a server to reach one of `until` ("running", "stopped", ...).

    A server that falls back to stopped while a start is awaited (its start failed) ends the
    wait with the reason the API gives in `state_detail`.

    The real API says "stopped in place" where the SDK's enum says "stopped_in_place": both
    spellings are accepted for either.
    """
    wanted = set(until)
    if wanted & {"stopped in place", "stopped_in_place"}:
        wanted |= {"stopped in place", "stopped_in_place"}
    what = f"server {server_id} in {zone}"
    return wait_for(
        lambda: (
            call(
                api.get_server,
                server_id=server_id,
                zone=zone,
                what=f"get {what}",
                cancelled=cancelled,
            ).server
        ),
        state_of=lambda s: s.state,
        until=wanted,
        failed=SERVER_FAILED - wanted,
        what=what,
        timeout=timeout,
        cancelled=cancelled,
        reason_of=lambda s: s.state_detail or "",
        fallback=SERVER_FALLBACK - wanted,
    )


def wait_until_gone(
    fetch: Callable[[], Any],
    *,
    what: str,
    timeout: float,
    cancelled: CancelCheck | None = None,
) -> None:
    """Poll `fetch()` (which calls the API through `call`) until it raises not found."""
    interval = max(0.01, float(settings.CLOUD_POLL_SECONDS))
    deadline = time.monotonic() + timeout
    while True:
        try:
            fetch()
        except CloudError as exc:
            if exc.not_found:
                return
            raise
        if time.monotonic() >= deadline:
            raise CloudTimeout(f"{what}: still there after {timeout:g} s")
        sleep(interval, cancelled)
