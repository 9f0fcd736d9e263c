"""Choices of the builds app."""

from __future__ import annotations

from django.db import models


class Trigger(models.TextChoices):
    MANUAL = "manual", "Manual"
    SCHEDULE = "schedule", "Refresh schedule"
    UPSTREAM_RELEASE = "upstream_release", "New upstream release"
    SECURITY = "security", "Security advisory"
    ECOSYSTEM = "ecosystem", "Ecosystem package update"
    NEW_ZONE = "new_zone", "New zone"
    NEW_PRODUCT = "new_product", "New product"
    BASE_RELEASE = "base_release", "Base image released"


class BuildState(models.TextChoices):
    QUEUED = "queued", "Queued"
    FETCHING = "fetching", "Fetching"
    CUSTOMIZING = "customizing", "Customizing"
    FINALIZING = "finalizing", "Finalizing"
    PUBLISHING = "publishing", "Publishing"
    TESTING = "testing", "Testing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class StageName(models.TextChoices):
    FETCH = "fetch", "Fetch"
    CUSTOMIZE = "customize", "Customize"
    FINALIZE = "finalize", "Finalize"
    PUBLISH = "publish", "Publish"
    TEST = "test", "Test"


class StageState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


RUNNING_STATES = (
    BuildState.FETCHING,
    BuildState.CUSTOMIZING,
    BuildState.FINALIZING,
    BuildState.PUBLISHING,
    BuildState.TESTING,
)
ACTIVE_STATES = (BuildState.QUEUED, *RUNNING_STATES)
TERMINAL_STATES = (BuildState.DONE, BuildState.FAILED, BuildState.CANCELLED)
STAGE_TO_STATE = {
    StageName.FETCH: BuildState.FETCHING,
    StageName.CUSTOMIZE: BuildState.CUSTOMIZING,
    StageName.FINALIZE: BuildState.FINALIZING,
    StageName.PUBLISH: BuildState.PUBLISHING,
    StageName.TEST: BuildState.TESTING,
}


class TestRunState(models.TextChoices):
    __test__ = False  # not a pytest test class

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    CANCELLED = "cancelled", "Cancelled"
    ERROR = "error", "Error"


class CheckState(models.TextChoices):
    """One check's outcome in one zone. `not_applicable` is never counted as passed."""

    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    ERROR = "error", "Error"
    NOT_APPLICABLE = "not_applicable", "Not applicable on this cloud"
    CANCELLED = "cancelled", "Cancelled"


CHECK_DONE_STATES = (
    CheckState.PASSED,
    CheckState.FAILED,
    CheckState.ERROR,
    CheckState.NOT_APPLICABLE,
    CheckState.CANCELLED,
)
