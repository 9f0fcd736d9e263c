"""Builds: one run of an image's pipeline for one architecture, and its stages.

A build is claimed by a worker with a lease (see builds.leases). Another worker may take
over a build whose heartbeat stopped, and resumes it at the first stage not done.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from builds.choices import (
    ACTIVE_STATES,
    CHECK_DONE_STATES,
    RUNNING_STATES,
    STAGE_TO_STATE,
    TERMINAL_STATES,
    BuildState,
    CheckState,
    StageName,
    StageState,
    TestRunState,
    Trigger,
)
from builds.leases import Leased, LeaseQuerySet
from catalog.choices import Arch, StorageType
from catalog.models import Image, ImageVersion, Zone


class BuildQuerySet(LeaseQuerySet["Build"]):
    def active(self) -> BuildQuerySet:
        return self.filter(state__in=ACTIVE_STATES)


class Build(Leased):
    """One run of the pipeline that turns an image's upstream source and recipe into a version."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="builds")
    arch = models.CharField(max_length=16, choices=Arch.choices, default=Arch.X86_64)
    trigger = models.CharField(max_length=32, choices=Trigger.choices, default=Trigger.MANUAL)
    reason = models.TextField(blank=True, help_text="Why this build ran, in plain words.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    state = models.CharField(
        max_length=16, choices=BuildState.choices, default=BuildState.QUEUED, db_index=True
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure_stage = models.CharField(max_length=16, blank=True)
    failure_reason = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    # What the build found upstream and what it produced.
    upstream_url = models.URLField(max_length=500, blank=True)
    upstream_serial = models.CharField(max_length=64, blank=True)
    upstream_checksum = models.CharField(max_length=200, blank=True)
    artefact_path = models.CharField(max_length=500, blank=True)
    artefact_size = models.BigIntegerField(null=True, blank=True)
    artefact_sha256 = models.CharField(max_length=64, blank=True)
    version = models.OneToOneField(
        ImageVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="build"
    )

    objects = BuildQuerySet.as_manager()

    QUEUED = BuildState.QUEUED
    LEASED_STATES = tuple(RUNNING_STATES)
    # A claimed build stays queued until its first stage starts.
    HEARTBEAT_STATES = tuple(ACTIVE_STATES)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_builds", "Can start, cancel and retry builds and test runs")]
        constraints = [
            # At most one queued or running build per image and architecture: a second click
            # cannot start a duplicate, even from two web servers at once.
            models.UniqueConstraint(
                fields=["image", "arch"],
                condition=Q(
                    state__in=[
                        "queued",
                        "fetching",
                        "customizing",
                        "finalizing",
                        "publishing",
                        "testing",
                    ]
                ),
                name="one_active_build_per_image_arch",
            )
        ]

    def __str__(self) -> str:
        return f"Build #{self.pk} of {self.image.label} ({self.arch})"

    def get_absolute_url(self) -> str:
        return reverse("builds:detail", args=[self.pk])

    # --- state -------------------------------------------------------------------------------
    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def duration(self) -> dt.timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def ensure_stages(self) -> None:
        for position, name in enumerate(StageName.values):
            Stage.objects.get_or_create(build=self, name=name, defaults={"position": position})

    # --- lease (see builds.leases) -------------------------------------------------------------
    @classmethod
    def lease_seconds(cls) -> float:
        return float(settings.BUILD_LEASE_SECONDS)

    def claimable(self, worker: str, now: dt.datetime) -> Q:
        """A build whose cancel was asked is not taken."""
        return super().claimable(worker, now) & Q(cancel_requested=False)

    def claim_updates(self) -> dict[str, Any]:
        return {"attempts": F("attempts") + 1}

    def enter_stage(self, stage: str) -> None:
        Build.objects.filter(pk=self.pk, state__in=ACTIVE_STATES).update(
            state=STAGE_TO_STATE[StageName(stage)]
        )
        self.refresh_from_db(fields=["state"])

    def cancel_is_requested(self) -> bool:
        return Build.objects.filter(pk=self.pk, cancel_requested=True).exists()

    def request_cancel(self) -> bool:
        """Ask a build to stop. A queued build is cancelled at once; a running one stops
        at its next check (within seconds: stages poll the flag)."""
        with transaction.atomic():
            if Build.objects.filter(pk=self.pk, state=BuildState.QUEUED).update(
                state=BuildState.CANCELLED, cancel_requested=True, finished_at=timezone.now()
            ):
                self.refresh_from_db()
                return True
            updated = Build.objects.filter(pk=self.pk, state__in=RUNNING_STATES).update(
                cancel_requested=True
            )
        self.refresh_from_db()
        return updated == 1

    def finish(self, state: str, *, stage: str = "", reason: str = "") -> bool:
        """Move the build to a terminal state; refuses if it already ended."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"{state} is not a terminal state")
        updated = Build.objects.filter(pk=self.pk, state__in=ACTIVE_STATES).update(
            state=state,
            finished_at=timezone.now(),
            failure_stage=stage if state == BuildState.FAILED else "",
            failure_reason=reason if state != BuildState.DONE else "",
            claimed_by="",
        )
        self.refresh_from_db()
        return updated == 1

    def can_retry(self) -> bool:
        return self.state in (BuildState.FAILED, BuildState.CANCELLED)

    def reset_for_retry(self) -> bool:
        """Queue a failed build again; its successful stages keep their outputs."""
        with transaction.atomic():
            updated = Build.objects.filter(
                pk=self.pk, state__in=[BuildState.FAILED, BuildState.CANCELLED]
            ).update(
                state=BuildState.QUEUED,
                finished_at=None,
                failure_stage="",
                failure_reason="",
                cancel_requested=False,
                claimed_by="",
                heartbeat_at=None,
                attempts=0,
            )
            if updated:
                self.stages.exclude(state=StageState.DONE).update(
                    state=StageState.PENDING, error="", finished_at=None
                )
        self.refresh_from_db()
        return updated == 1


class Stage(models.Model):
    """One stage of a build: its state, times, progress, outputs and error."""

    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=16, choices=StageName.choices)
    position = models.PositiveSmallIntegerField(default=0)
    state = models.CharField(max_length=16, choices=StageState.choices, default=StageState.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    progress_unit = models.CharField(max_length=16, blank=True)  # "bytes" or "steps"
    outputs = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["build", "position"]
        constraints = [models.UniqueConstraint(fields=["build", "name"], name="one_stage_per_name")]

    def __str__(self) -> str:
        return f"{self.build} {self.name}"

    @property
    def duration(self) -> dt.timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    @property
    def percent(self) -> int | None:
        if not self.progress_total:
            return None
        return max(0, min(100, int(self.progress_done * 100 / self.progress_total)))


class StageLogLine(models.Model):
    """A line a stage wrote to its log; the build page polls the tail."""

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="log_lines")
    created_at = models.DateTimeField(default=timezone.now)
    text = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.text[:80]


class JanitorRun(models.Model):
    """One pass of the janitor over everything the factory tagged in the cloud."""

    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    dry_run = models.BooleanField(default=False)
    findings = models.JSONField(
        default=list, blank=True, help_text="Tagged resources seen, with why each is an orphan."
    )
    removed = models.JSONField(default=list, blank=True)
    errors = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("run_janitor", "Can delete orphaned cloud resources")]

    def __str__(self) -> str:
        return f"Janitor run {self.started_at:%Y-%m-%d %H:%M}"


class TestRunQuerySet(LeaseQuerySet["TestRun"]):
    __test__ = False  # not a pytest test class


class TestRun(Leased):
    """The checks of one image version in one zone on one storage type, on servers booted
    from its local image of that type (local storage: an l_ssd root; Block Storage: a Block
    root volume, on a server type that uses it).

    A build's test stage starts one per (enabled zone, storage type the version is published
    with); Re-run (one cell, one zone and storage type, or every failed cell) starts another
    with only those checks. The matrix on the version page shows, per zone, storage type and
    check, the latest result. A run is claimed with a lease like a build
    (see builds.leases); a run whose heartbeat stopped is taken over by its build's
    test stage, or sent again by a schedule (builds.tasks.requeue_stale_test_runs).
    """

    __test__ = False  # not a pytest test class

    version = models.ForeignKey(ImageVersion, on_delete=models.CASCADE, related_name="test_runs")
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="test_runs")
    storage_type = models.CharField(
        max_length=16,
        choices=StorageType.choices,
        default=StorageType.LOCAL,
        help_text="The storage of the local image under test (and of its servers' roots).",
    )
    build = models.ForeignKey(
        Build, on_delete=models.SET_NULL, null=True, blank=True, related_name="test_runs"
    )
    checks = models.JSONField(default=list, help_text="The names of the checks this run runs.")
    state = models.CharField(
        max_length=16, choices=TestRunState.choices, default=TestRunState.QUEUED, db_index=True
    )
    reason = models.CharField(max_length=200, blank=True, help_text="Why this run was started.")
    keep_resources_on_failure = models.BooleanField(
        default=False, help_text="Leave the servers of failed checks in place for debugging."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True, help_text="Why the run could not run its checks.")
    kept_resources = models.JSONField(
        default=list, blank=True, help_text="Resources left in place on purpose (kept on failure)."
    )

    objects = TestRunQuerySet.as_manager()

    QUEUED = TestRunState.QUEUED
    LEASED_STATES = HEARTBEAT_STATES = (TestRunState.RUNNING,)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return (
            f"Test run #{self.pk} of {self.version} in {self.zone.code} "
            f"({self.get_storage_type_display()})"
        )

    @property
    def is_active(self) -> bool:
        return self.state in (TestRunState.QUEUED, TestRunState.RUNNING)

    @property
    def duration(self) -> dt.timedelta | None:
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def cancel_is_requested(self) -> bool:
        return TestRun.objects.filter(pk=self.pk, cancel_requested=True).exists()

    # --- lease (see builds.leases) -------------------------------------------------------------
    @classmethod
    def lease_seconds(cls) -> float:
        """TEST_LEASE_SECONDS (60 by default: six of the runner's heartbeats)."""
        return float(settings.TEST_LEASE_SECONDS)

    def claimable(self, worker: str, now: dt.datetime) -> Q:
        """A queued run whose cancel was asked is not taken (it is ended unstarted). A running
        run whose cancel was asked while its worker was dead is: someone has to delete what
        that worker left, and end the run."""
        return super().claimable(worker, now) & ~Q(state=TestRunState.QUEUED, cancel_requested=True)

    def claim_updates(self) -> dict[str, Any]:
        return {"state": TestRunState.RUNNING}


class CheckResult(models.Model):
    """One check of one test run: its state, duration, log and, on failure, why."""

    test_run = models.ForeignKey(TestRun, on_delete=models.CASCADE, related_name="results")
    check_name = models.CharField(max_length=32)
    state = models.CharField(max_length=16, choices=CheckState.choices, default=CheckState.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    reason = models.TextField(blank=True, help_text="The failing assertion, in plain words.")
    not_applicable = models.JSONField(
        default=list,
        blank=True,
        help_text="Assertions this cloud cannot provide (reported, never counted as passed).",
    )
    log = models.TextField(blank=True)

    class Meta:
        ordering = ["test_run", "id"]
        constraints = [
            models.UniqueConstraint(fields=["test_run", "check_name"], name="one_result_per_check")
        ]

    def __str__(self) -> str:
        return f"{self.check_name} in {self.test_run}: {self.state}"

    @property
    def is_done(self) -> bool:
        return self.state in CHECK_DONE_STATES

    def append_log(self, line: str) -> None:
        """Append a line (the page polls the log while the check runs)."""
        CheckResult.objects.filter(pk=self.pk).update(
            log=models.functions.Concat(F("log"), models.Value(line.rstrip("\n") + "\n"))
        )


class TestRunResource(models.Model):
    """A cloud resource a test run created and has not deleted (yet): the run's ledger on
    disk (see builds.testing.ledger). The row is written when the resource is created, before
    the check goes on, and removed once the resource is deleted; so the rows left behind by a
    worker that died are what the worker that takes the run over deletes first. Rows of
    resources kept on failure stay with the run."""

    __test__ = False  # not a pytest test class

    test_run = models.ForeignKey(TestRun, on_delete=models.CASCADE, related_name="resources")
    kind = models.CharField(max_length=32)
    resource_id = models.CharField(max_length=64)
    zone = models.CharField(max_length=32)
    region = models.CharField(max_length=32, blank=True)
    name = models.CharField(max_length=200, blank=True)
    owner = models.CharField(
        max_length=64, help_text="The check that created it, or the zone's shared chain."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["test_run", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["test_run", "kind", "resource_id"], name="one_row_per_test_resource"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.resource_id} of test run #{self.test_run_id}"
