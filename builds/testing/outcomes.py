"""How a check ends other than by passing: a failed assertion, or a cancelled run."""

from __future__ import annotations


class CheckFailed(Exception):
    """An assertion of a check did not hold; `str()` says which, in plain words."""


class CheckCancelled(Exception):
    """The test run was cancelled while the check was running."""
