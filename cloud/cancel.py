"""Cancel, one way for every layer: long work (a download, the customize appliance, the final
conversion, a cloud call or wait, a check) polls a `CancelCheck`, and whatever notices that it
turned true raises `Cancelled`, which every caller up to the pipeline or the test runner lets
through. Work that is cancelled first undoes what it promised its caller (a partial download
is removed, the appliance killed, a multipart upload aborted); `str()` says where it stopped.

This module imports nothing of the factory: cloud/, the build engines and the apps all
import it.
"""

from __future__ import annotations

from collections.abc import Callable

# True once the work should stop: a user cancelled, or the worker lost its claim.
CancelCheck = Callable[[], bool]


class Cancelled(Exception):
    """The work was cancelled (by a user, or because the worker lost its claim on it)."""


def raise_if_cancelled(cancelled: CancelCheck | None, message: str) -> None:
    """Raise Cancelled(`message`) when there is a check and it says to stop."""
    if cancelled is not None and cancelled():
        raise Cancelled(message)
