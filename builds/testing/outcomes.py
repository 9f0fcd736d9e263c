"""How a check ends other than by passing: a failed assertion (CheckFailed), or a cancelled
run (cloud.cancel's Cancelled, raised by the harness and the cloud layer alike)."""

from __future__ import annotations


class CheckFailed(Exception):
    """An assertion of a check did not hold; `str()` says which, in plain words."""
