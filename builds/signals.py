"""Signals other apps listen to (builds never imports them): a test run has ended."""

from __future__ import annotations

from django.dispatch import Signal

# Sent once per test run when it ends (finished, cancelled or error), after the version's
# verdict was recorded. Arguments: `test_run` (builds.models.TestRun).
test_run_ended = Signal()
