"""Fault injection: the next N calls of an operation fail with a status, answer 429 with
Retry-After, or are slow. Set through the operator API."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from localcloud.http import ApiError, Response


@dataclass
class Fault:
    """One armed fault. `operation` is "METHOD /path/template" as routed, or "*"; `zone`, when
    set, limits it to calls in that zone. `body`, when set, is the whole error answered (the
    real shape of an error, e.g. `quotas_exceeded` with its details); else the error is made
    of `status` and `message`."""

    operation: str
    count: int = 1
    status: int = 503
    retry_after: int | None = None
    delay: float = 0.0
    message: str = "injected fault"
    zone: str | None = None
    body: dict[str, Any] | None = None


class Faults:
    """The armed faults, consumed call by call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed: list[Fault] = []

    def arm(self, fault: Fault) -> None:
        with self.lock:
            self.armed.append(fault)

    def clear(self) -> None:
        with self.lock:
            self.armed.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self.lock:
            return [asdict(f) for f in self.armed]

    def take(self, operation: str, zone: str | None = None) -> Fault | None:
        with self.lock:
            for fault in self.armed:
                if fault.zone is not None and fault.zone != zone:
                    continue
                if fault.operation in ("*", operation) and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self.armed.remove(fault)
                    return fault
        return None

    def apply(self, operation: str, zone: str | None = None) -> Response | None:
        """Sleep for a slow fault; return the error response of a failing one, else None."""
        fault = self.take(operation, zone)
        if fault is None:
            return None
        if fault.delay:
            time.sleep(fault.delay)
        if fault.status < 400:
            return None  # a slow call that then succeeds
        if fault.body is not None:
            response = Response(status=fault.status, body=dict(fault.body))
        else:
            error = ApiError(fault.status, _type_for(fault.status), fault.message)
            response = Response(status=error.status, body=error.body)
        if fault.retry_after is not None:
            response.headers["Retry-After"] = str(fault.retry_after)
        return response


def _type_for(status: int) -> str:
    return {429: "too_many_requests", 503: "service_unavailable"}.get(status, "internal_error")
