"""Calling the cloud: bounded retries with backoff, deadlines, cancel, and plain errors.

Every SDK call of the factory goes through `call()`:

- 429, 502, 503 and 504 are retried with exponential backoff (or after the `Retry-After`
  the API asked for), a bounded number of times;
- any other 4xx/5xx becomes a `CloudError` whose message is the API's own, in plain words;
- a call that does not answer within its deadline raises `CloudTimeout` (the SDK sets no
  timeout on its requests: without one a stuck connection would hang a build forever);
- `cancelled()` is honoured while waiting for an answer and between attempts (raising
  cloud.cancel.Cancelled).

A create call that failed in a way where the cloud may have done the work anyway (a timeout,
a lost connection, a 5xx from a gateway) is never blindly repeated: `recover()` (a lookup by
tag, see cloud.tags) runs first, and what it finds is returned instead of a duplicate.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from django.conf import settings
from scaleway_core.api import ScalewayException

from cloud.cancel import CancelCheck, raise_if_cancelled

log = logging.getLogger("cloud")

T = TypeVar("T")

# Throttled or unavailable: worth another try. 502/503/504 may also mean "done, but the
# answer was lost", hence `recover` before a create is repeated.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class CloudError(Exception):
    """A cloud operation failed; `str()` is a sentence a person can act on."""

    def __init__(self, message: str, *, status: int | None = None, type_: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type_

    @property
    def not_found(self) -> bool:
        return self.status == 404


class CloudTimeout(CloudError):
    """A call or a wait did not finish before its deadline."""


def describe(exc: ScalewayException, what: str = "") -> CloudError:
    """Turn the SDK's exception (whose str() is the raw body) into a CloudError in words."""
    status = exc.status_code
    try:
        data = exc.response.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    message = str(data.get("message") or "").strip() or f"HTTP {status}"
    details = data.get("details")
    if isinstance(details, list) and details:
        # The modern "invalid_arguments" shape: name each argument and why it was refused.
        parts = []
        for item in details:
            if isinstance(item, dict) and "quota" in item:
                # quotas_exceeded: which quota, and where it stands.
                parts.append(
                    f"{item.get('resource', '?')}: {item.get('current', '?')} of "
                    f"{item.get('quota', '?')} used"
                )
            elif isinstance(item, dict):
                name = item.get("argument_name", "?")
                reason = item.get("help_message") or item.get("reason") or ""
                parts.append(f"{name}: {reason}" if reason else str(name))
        message = f"{message} ({'; '.join(parts)})"
    fields = data.get("fields")
    if isinstance(fields, dict) and fields:
        message = f"{message} ({'; '.join(f'{k}: {v}' for k, v in fields.items())})"
    if data.get("type") == "not_found" and data.get("resource_id"):
        message = f"{message} ({data.get('resource')} {data.get('resource_id')})"
    text = f"{what}: {message}" if what else message
    return CloudError(f"{text} [HTTP {status}]", status=status, type_=str(data.get("type") or ""))


def retry_after(exc: ScalewayException) -> float | None:
    """The delay the API asked for in Retry-After (seconds, or an HTTP date), if any."""
    headers = exc.response.headers if exc.response is not None else None
    value = headers.get("Retry-After") if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: base, 2*base, 4*base, ... capped."""
    base = float(settings.CLOUD_RETRY_BASE_SECONDS)
    cap = float(settings.CLOUD_RETRY_MAX_SECONDS)
    delay: float = min(cap, base * 2 ** (attempt - 1))
    return delay * random.uniform(0.8, 1.2)  # jitter: parallel zones do not retry in step


def sleep(seconds: float, cancelled: CancelCheck | None = None) -> None:
    """Sleep, but wake up within a tenth of a second of a cancel (raises Cancelled)."""
    deadline = time.monotonic() + seconds
    while True:
        raise_if_cancelled(cancelled, "cancelled")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(0.1, remaining))


def _run(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    what: str,
    timeout: float,
    cancelled: CancelCheck | None,
) -> T:
    """Run one SDK call with a deadline. The SDK's requests have no timeout, so the call runs
    in a daemon thread and is abandoned (not killed) past the deadline."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed over to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name=f"cloud-call {what}", daemon=True).start()
    deadline = time.monotonic() + timeout
    while not done.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
        raise_if_cancelled(cancelled, f"{what}: cancelled")
        if time.monotonic() >= deadline:
            raise CloudTimeout(f"{what}: no answer from the API within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def _recover(
    recover: Callable[[], T | None],
    *,
    patient: bool,
    cancelled: CancelCheck | None,
) -> T | None:
    """Look for what a failed create may have made. After a timeout the cloud may still be
    working on the request, so keep looking for CLOUD_RECOVER_SECONDS; after an answered
    5xx, one look is enough."""
    window = float(settings.CLOUD_RECOVER_SECONDS) if patient else 0.0
    interval = max(0.05, float(settings.CLOUD_POLL_SECONDS))
    deadline = time.monotonic() + window
    while True:
        try:
            found = recover()
        except CloudError as exc:
            log.warning("lookup after a failed create did not answer: %s", exc)
            found = None
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return None
        sleep(interval, cancelled)


def call(
    fn: Callable[..., T],
    *args: Any,
    what: str,
    cancelled: CancelCheck | None = None,
    recover: Callable[[], T | None] | None = None,
    timeout: float | None = None,
    attempts: int | None = None,
    **kwargs: Any,
) -> T:
    """Call `fn(*args, **kwargs)` (an SDK method) with retries; see the module docstring.

    `what` names the operation in errors ("create snapshot in fr-par-1"). `recover`, for
    create calls, returns the resource if the failed attempt made it after all.
    """
    attempts = attempts or settings.CLOUD_RETRY_ATTEMPTS
    timeout = timeout or float(settings.CLOUD_REQUEST_TIMEOUT_SECONDS)
    error: CloudError | None = None
    for attempt in range(1, attempts + 1):
        raise_if_cancelled(cancelled, f"{what}: cancelled")
        patient = False
        try:
            return _run(fn, args, kwargs, what=what, timeout=timeout, cancelled=cancelled)
        except ScalewayException as exc:
            error = describe(exc, what)
            if exc.status_code not in RETRYABLE_STATUSES:
                raise error from exc
            delay = retry_after(exc)
            if delay is None:
                delay = backoff(attempt)
            else:
                delay = min(delay, float(settings.CLOUD_RETRY_MAX_SECONDS))
            ambiguous = exc.status_code != 429  # a throttled request was not processed
        except CloudTimeout as exc:
            error, delay, ambiguous, patient = exc, 0.0, True, True
        except requests.RequestException as exc:
            # A lost connection: the request may or may not have reached the API.
            error = CloudError(f"{what}: cannot reach the API ({type(exc).__name__})")
            delay, ambiguous, patient = backoff(attempt), True, True
        if attempt == attempts:
            break
        log.warning("%s; attempt %d of %d, retrying in %.1f s", error, attempt, attempts, delay)
        if ambiguous and recover is not None:
            found = _recover(recover, patient=patient, cancelled=cancelled)
            if found is not None:
                log.info("%s: found what the failed attempt created; reusing it", what)
                return found
        sleep(delay, cancelled)
    assert error is not None
    if recover is not None:
        found = _recover(recover, patient=isinstance(error, CloudTimeout), cancelled=cancelled)
        if found is not None:
            return found
    kind = CloudTimeout if isinstance(error, CloudTimeout) else CloudError
    raise kind(
        f"{error.message} (gave up after {attempts} attempts)",
        status=error.status,
        type_=error.type,
    )
