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
}
