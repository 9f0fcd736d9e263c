"""Asking for builds, claiming them with a lease, cancelling, retrying, resuming.

These run the real pipeline against a real local upstream server; the stages that need
libguestfs are exercised in test_build_pipeline.py (guestfs tier).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from builds import tasks
from builds.choices import BuildState, StageName, StageState
from builds.models import Build
from builds.queue import request_build
from catalog.models import RecipeStep
from tests.builds.factories import demo_image, serve_demo_file

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def factory_dirs(settings, tmp_path):
    settings.ARTEFACT_DIR = tmp_path / "artefacts"
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"
    settings.UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    return tmp_path


@pytest.fixture
def image(upstream):
    return demo_image(upstream)


def test_a_second_click_does_not_start_a_duplicate(client, manager, image) -> None:
    client.force_login(manager)
    url = reverse("builds:rebuild", args=[image.label])
    first = client.post(url, HTTP_HX_REQUEST="true")
    second = client.post(url, HTTP_HX_REQUEST="true")
    assert Build.objects.count() == 1
    assert b"Queued" in first.content
    assert b"Already queued" in second.content


def test_the_database_refuses_two_active_builds_of_one_image_and_arch(image) -> None:
    from django.db import IntegrityError, transaction

    Build.objects.create(image=image)
    with pytest.raises(IntegrityError), transaction.atomic():
        Build.objects.create(image=image, state=BuildState.FETCHING)


def test_a_live_claim_is_left_alone_and_a_stale_one_is_taken_over(settings, image) -> None:
    build = request_build(image, "x86_64").build
    assert build.claim("worker-a")
    build.state = BuildState.CUSTOMIZING
    build.save()
    assert not build.claim("worker-b"), "a live claim must be left alone"
    Build.objects.filter(pk=build.pk).update(
        heartbeat_at=timezone.now() - dt.timedelta(seconds=settings.BUILD_LEASE_SECONDS + 1)
    )
    assert build.claim("worker-b")
    assert build.claimed_by == "worker-b"
    assert build.attempts == 2


def test_an_ended_build_is_never_claimed(image) -> None:
    build = request_build(image, "x86_64").build
    build.finish(BuildState.FAILED, stage="fetch", reason="boom")
    assert not build.claim("worker-a")
    assert not build.finish(BuildState.DONE), "finish refuses an ended build"


def test_cancelling_a_queued_build_ends_it_at_once(image) -> None:
    build = request_build(image, "x86_64").build
    assert build.request_cancel()
    assert build.state == BuildState.CANCELLED
    assert tasks.run_build(build.pk).startswith("not claimed")


def test_a_404_upstream_fails_the_fetch_stage_with_the_reason_on_the_page(
    client, viewer, factory_dirs, upstream, image
) -> None:
    (upstream.root / "SHA256SUMS").write_text("")  # no image listed
    upstream.fail("404", path="/SHA256SUMS")
    build = request_build(image, "x86_64").build
    assert tasks.run_build(build.pk) == BuildState.FAILED
    build.refresh_from_db()
    assert build.failure_stage == StageName.FETCH
    assert "404" in build.failure_reason
    client.force_login(viewer)
    page = client.get(build.get_absolute_url()).content.decode()
    assert 'data-testid="failure"' in page
    assert "404" in page
    assert not list((factory_dirs / "cache").rglob("*.qcow2"))


def test_retry_resumes_at_the_failed_stage_and_reuses_the_download(
    monkeypatch, factory_dirs, upstream, qcow2_image, image
) -> None:
    name = serve_demo_file(upstream, qcow2_image)
    RecipeStep.objects.create(
        image=image,
        position=1,
        type="write_file",
        params={"path": "/etc/token", "content": "${secret:DEMO_TOKEN}"},
    )
    monkeypatch.delenv("DEMO_TOKEN", raising=False)
    build = request_build(image, "x86_64").build
    assert tasks.run_build(build.pk) == BuildState.FAILED
    build.refresh_from_db()
    assert build.failure_stage == StageName.CUSTOMIZE
    assert "DEMO_TOKEN" in build.failure_reason
    assert build.upstream_serial == "20261126-1"
    fetch = build.stages.get(name=StageName.FETCH)
    assert fetch.state == StageState.DONE
    downloads = len(upstream.requests_for(name))

    assert build.reset_for_retry()
    assert build.stages.get(name=StageName.FETCH).state == StageState.DONE
    assert build.stages.get(name=StageName.CUSTOMIZE).state == StageState.PENDING
    assert tasks.run_build(build.pk) == BuildState.FAILED
    assert len(upstream.requests_for(name)) == downloads, "the retry downloaded again"
    assert build.stages.get(name=StageName.FETCH).outputs == fetch.outputs


def test_a_stale_build_is_sent_again(settings, image) -> None:
    build = request_build(image, "x86_64").build
    build.claim("dead-worker")
    Build.objects.filter(pk=build.pk).update(
        state=BuildState.CUSTOMIZING,
        heartbeat_at=timezone.now() - dt.timedelta(seconds=settings.BUILD_LEASE_SECONDS * 2),
    )
    from django_q.models import OrmQ

    before = OrmQ.objects.count()
    assert tasks.requeue_stale_builds() == 1
    assert OrmQ.objects.count() == before + 1


def test_a_build_of_an_architecture_this_worker_cannot_run_is_left_queued(image) -> None:
    build = request_build(image, "arm64").build
    assert tasks.run_build(build.pk) == "wrong architecture"
    build.refresh_from_db()
    assert build.state == BuildState.QUEUED
