"""The lease a worker holds on a test run (builds.leases; a build's is in test_build_queue):
a live claim is left alone, a stale one is taken over, a heartbeat tells a worker it lost
its claim, and a cancel keeps a queued run from being taken but not a running one."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from builds.choices import TestRunState
from builds.leases import worker_name
from builds.models import TestRun
from catalog.models import ImageVersion, Zone
from tests.catalog.factories import os_image


@pytest.fixture
def run(db) -> TestRun:
    image = os_image("debian_bookworm")
    version = ImageVersion.objects.create(image=image, arch="x86_64", name="2026-11-26")
    zone = Zone.objects.create(code="fr-par-1", enabled=True)
    return TestRun.objects.create(version=version, zone=zone, checks=["network"])


def _expire(run: TestRun, settings) -> None:
    stale = timezone.now() - dt.timedelta(seconds=settings.TEST_LEASE_SECONDS + 1)
    TestRun.objects.filter(pk=run.pk).update(heartbeat_at=stale)


def test_a_live_claim_on_a_test_run_is_left_alone_and_a_stale_one_is_taken_over(
    run: TestRun, settings
) -> None:
    assert run.claim("worker-a")
    assert (run.state, run.claimed_by) == (TestRunState.RUNNING, "worker-a")
    assert run.started_at is not None
    assert run.claim("worker-a"), "the worker that holds the claim may claim again"
    assert not run.claim("worker-b"), "a live claim must be left alone"
    assert list(TestRun.objects.stale_claims()) == []

    _expire(run, settings)
    assert list(TestRun.objects.stale_claims()) == [run]
    assert run.claim("worker-b")
    assert run.claimed_by == "worker-b"
    assert not run.heartbeat("worker-a"), "the first worker lost its claim"
    assert run.heartbeat("worker-b")


def test_a_cancelled_queued_run_is_not_claimed_but_a_cancelled_running_one_is(
    run: TestRun, settings
) -> None:
    TestRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    assert not run.claim("worker-a")

    TestRun.objects.filter(pk=run.pk).update(state=TestRunState.RUNNING, claimed_by="dead")
    _expire(run, settings)
    assert run.claim("worker-a"), "someone has to delete what the dead worker left"


def test_an_ended_run_takes_no_claim_and_no_heartbeat(run: TestRun) -> None:
    assert run.claim("worker-a")
    TestRun.objects.filter(pk=run.pk).update(state=TestRunState.FINISHED)
    assert not run.heartbeat("worker-a")
    assert not run.claim("worker-a")


def test_a_worker_is_named_by_its_process_and_a_caller_may_ask_for_a_name_of_its_own() -> None:
    assert worker_name() == worker_name()
    assert worker_name(per_call=True) != worker_name(per_call=True)
    assert worker_name(per_call=True).startswith(worker_name() + ":")
