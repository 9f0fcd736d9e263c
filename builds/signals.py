"""Signals other apps listen to (builds never imports them): a build failed, a test run ended,
a build recorded its version."""

from __future__ import annotations

from django.dispatch import Signal

# Sent once when a build fails (a stage failed or crashed), after the failure was recorded on
# the build. Arguments: `build` (builds.models.Build). A listener's exception is logged by the
# pipeline and never changes the build's outcome.
build_failed = Signal()

# Sent once per test run when it ends (finished, cancelled or error), after the version's
# verdict was recorded. Arguments: `test_run` (builds.models.TestRun).
test_run_ended = Signal()

# Sent when the finalize stage has recorded the build's new version with its package manifest
# (each binary package's source name and version included, from the customize stage).
# Arguments: `version` (catalog.models.ImageVersion). A listener's exception is logged by the
# stage and never fails the build.
version_recorded = Signal()
