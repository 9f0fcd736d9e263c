"""Team alerts: failed builds (email and webhook, once) and the daily digest, over real SMTP."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.utils import timezone

from builds.choices import BuildState, CheckState
from builds.models import Build, CheckResult, JanitorRun, TestRun
from builds.signals import test_run_ended
from catalog.choices import ImageState
from catalog.models import ImageVersion, Zone
from lifecycle import alerts
from lifecycle import tasks as lifecycle_tasks
from lifecycle.models import AlertKind, AlertSent, Customer, Notice, NoticeState
from tests.catalog import factories
from tests.lifecycle import version_with_images

pytestmark = pytest.mark.django_db
TODAY = dt.date(2027, 3, 10)


class WebhookServer:
    """A real local HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.received.append(json.loads(self.rfile.read(length)))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(settings) -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        settings.ALERT_WEBHOOK_URL = server.url
        yield server


@pytest.fixture
def team(settings) -> list[str]:
    settings.ALERT_EMAILS = ["team@example.com", "oncall@example.com"]
    settings.SITE_URL = "https://factory.example.com"
    settings.ALERT_WEBHOOK_URL = ""
    return settings.ALERT_EMAILS


def _failed_build() -> Build:
    image = factories.os_image("debian_bookworm")
    return Build.objects.create(
        image=image,
        arch="x86_64",
        state=BuildState.FAILED,
        failure_stage="fetch",
        failure_reason="The upstream answered 404 for debian-12-genericcloud-amd64.qcow2",
    )


def test_a_failed_build_sends_one_alert_email_and_a_second_call_sends_nothing(
    smtp_server,
    team,
) -> None:
    build = _failed_build()
    assert alerts.build_failed(build) is True
    assert alerts.build_failed(build) is False
    assert len(smtp_server.received) == 1
    message = smtp_server.received[0]
    assert sorted(message.rcpt_tos) == sorted(team)
    assert "debian_bookworm" in message.subject and "fetch" in message.subject
    text = message.part("text/plain")
    assert "x86_64" in text and "404 for debian-12" in text
    assert f"https://factory.example.com/builds/{build.pk}/" in text
    assert "https://factory.example.com/builds/" in message.part("text/html")
    row = AlertSent.objects.get(kind=AlertKind.BUILD_FAILED, key=str(build.pk))
    assert row.sent_at is not None and row.error == ""


@pytest.mark.django_db(transaction=True)
def test_a_build_the_pipeline_fails_alerts_the_team(
    smtp_server,
    team,
    settings,
    tmp_path,
    upstream,
) -> None:
    from builds import tasks
    from builds.queue import request_build

    settings.ARTEFACT_DIR = tmp_path / "artefacts"
    settings.DOWNLOAD_CACHE_DIR = tmp_path / "cache"
    settings.UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1"]
    image = factories.os_image("debian_demo", channel=upstream.url())
    upstream.fail("404", path="/SHA512SUMS")
    build = request_build(image, "x86_64").build
    assert tasks.run_build(build.pk) == BuildState.FAILED
    assert len(smtp_server.received) == 1
    assert "404" in smtp_server.received[0].part("text/plain")


def test_a_build_that_did_not_fail_sends_no_alert(smtp_server, team) -> None:
    build = _failed_build()
    Build.objects.filter(pk=build.pk).update(state=BuildState.DONE)
    assert alerts.build_failed(build) is False
    assert smtp_server.received == []
    assert not AlertSent.objects.exists()


def test_the_webhook_gets_the_alert_as_json(smtp_server, team, webhook) -> None:
    build = _failed_build()
    alerts.build_failed(build)
    alerts.build_failed(build)
    assert len(webhook.received) == 1
    body = webhook.received[0]
    assert body["kind"] == "build_failed"
    assert "debian_bookworm" in body["text"] and "fetch" in body["text"]
    assert f"/builds/{build.pk}/" in body["text"]
    assert len(smtp_server.received) == 1


def test_a_failing_webhook_is_recorded_and_the_email_still_goes(
    smtp_server,
    team,
    settings,
) -> None:
    with WebhookServer(status=500) as server:
        settings.ALERT_WEBHOOK_URL = server.url
        build = _failed_build()
        assert alerts.build_failed(build) is True
    assert len(server.received) == 1
    assert len(smtp_server.received) == 1
    assert "webhook" in AlertSent.objects.get().error


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("failure", ["an error status", "a closed port"])
def test_a_failing_webhook_logs_and_records_only_the_scheme_host_and_port_of_its_url(
    smtp_server,
    team,
    settings,
    caplog,
    failure,
) -> None:
    secret_path = "/services/T0AAA/B0BBB/s3cr3tW3bh00k"
    with WebhookServer(status=403) as server:
        port = server.server.server_address[1] if failure == "an error status" else _closed_port()
        settings.ALERT_WEBHOOK_URL = (
            f"http://hookuser:hookpass@127.0.0.1:{port}{secret_path}?token=t0k3nV4lue#frag"
        )
        with caplog.at_level("INFO"):  # LOG_LEVEL's default; urllib3 says more at DEBUG
            assert alerts.build_failed(_failed_build()) is True
    error = AlertSent.objects.get().error
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert error.startswith(f"webhook to http://127.0.0.1:{port}: ")
    assert f"http://127.0.0.1:{port}" in logged
    for secret in ("s3cr3tW3bh00k", "/services/", "t0k3nV4lue", "hookuser", "hookpass"):
        assert secret not in error and secret not in logged
    assert len(smtp_server.received) == 1  # the email still went


def test_a_test_run_failure_is_told_once(smtp_server, team) -> None:
    image = factories.os_image("debian_bookworm")
    sent = [
        alerts.test_run_failed(
            key="42", image=image, arch="x86_64", zone="fr-par-1", reason="boot", path="/t/42/"
        )
        for _ in range(2)
    ]
    assert sent == [True, False]
    assert "fr-par-1" in smtp_server.received[0].subject


def _ended_run(states: dict[str, str], run_state: str = "finished", error: str = "") -> TestRun:
    image = factories.os_image("debian_bookworm")
    version = version_with_images(image, "2026-11-20", zones=("fr-par-1",))
    run = TestRun.objects.create(
        version=version,
        zone=Zone.objects.get(code="fr-par-1"),
        checks=list(states),
        state=run_state,
        error=error,
    )
    for name, state in states.items():
        reason = "boot id did not change after reboot" if state == CheckState.FAILED else ""
        CheckResult.objects.create(test_run=run, check_name=name, state=state, reason=reason)
    return run


def test_a_test_run_that_ends_with_a_failed_check_alerts_the_team_once(
    smtp_server,
    team,
) -> None:
    run = _ended_run({"network": CheckState.PASSED, "reboot": CheckState.FAILED})
    for _ in range(2):  # the signal as the runner sends it when the run ends; twice: one alert
        test_run_ended.send(sender=TestRun, test_run=run)
    assert len(smtp_server.received) == 1
    message = smtp_server.received[0]
    assert "fr-par-1" in message.subject and "debian_bookworm" in message.subject
    assert "reboot: boot id did not change after reboot" in message.part("text/plain")
    assert run.version.get_absolute_url() in message.part("text/plain")


@pytest.mark.parametrize(
    ("states", "run_state", "error", "told"),
    [
        ({"network": CheckState.PASSED}, "finished", "", False),
        ({"network": CheckState.CANCELLED}, "cancelled", "", False),
        ({"network": CheckState.ERROR}, "finished", "", True),
        ({}, "error", "the cloud cannot be used: 503", True),
    ],
    ids=["passed", "cancelled", "check-error", "run-error"],
)
def test_only_a_run_that_did_not_pass_alerts(
    smtp_server,
    team,
    states,
    run_state,
    error,
    told,
) -> None:
    test_run_ended.send(sender=TestRun, test_run=_ended_run(states, run_state, error))
    assert len(smtp_server.received) == (1 if told else 0)
    if error:
        assert error in smtp_server.received[0].part("text/plain")


def _digest_world() -> None:
    """A stale image, one due soon, a deprecation in 10 days, notices to decide, a janitor run."""
    now = timezone.now()
    stale = factories.os_image("ubuntu_focal")
    ImageVersion.objects.create(
        image=stale,
        name="2026-11-01",
        created_at=now - dt.timedelta(days=100),
        released_at=now - dt.timedelta(days=100),
    )
    soon = factories.os_image("debian_bookworm")
    ImageVersion.objects.create(
        image=soon,
        name="2026-12-20",
        created_at=now - dt.timedelta(days=85),
        released_at=now - dt.timedelta(days=85),
    )
    leaving = factories.os_image("centos_stream")
    leaving.state = ImageState.DEPRECATION_SCHEDULED
    leaving.deprecation_date = TODAY + dt.timedelta(days=10)
    leaving.replacement = soon
    leaving.save()
    later = factories.os_image("rocky_eight")
    later.state = ImageState.DEPRECATION_SCHEDULED
    later.deprecation_date = TODAY + dt.timedelta(days=60)
    later.save()
    customer = Customer.objects.create(project_id="p-1", name="Acme", email="ops@acme.example")
    Notice.objects.create(
        customer=customer,
        image=leaving,
        kind="30",
        deprecation_date=leaving.deprecation_date,
        due_at=now,
        state=NoticeState.UNCERTAIN,
    )
    JanitorRun.objects.create(
        started_at=now - dt.timedelta(hours=3),
        finished_at=now - dt.timedelta(hours=3),
        findings=[
            {
                "kind": "snapshot",
                "where": "fr-par-1",
                "id": "snap-1",
                "name": "old",
                "build": None,
                "created": "",
                "orphan": True,
                "reason": "no build row",
                "action": "would delete",
            },
            {
                "kind": "image",
                "where": "fr-par-1",
                "id": "img-2",
                "name": "kept",
                "build": 1,
                "created": "",
                "orphan": False,
                "reason": "current",
                "action": "kept",
            },
        ],
    )


def test_the_daily_digest_lists_stale_images_deprecations_notices_and_janitor_findings(
    smtp_server,
    team,
    webhook,
) -> None:
    with time_machine.travel(dt.datetime(2027, 3, 10, 7, 30), tick=False):
        _digest_world()
        summary = lifecycle_tasks.daily_digest_task()
        lifecycle_tasks.daily_digest_task()  # the same day again: nothing more
    assert "1 stale images" in summary
    assert len(smtp_server.received) == 1
    message = smtp_server.received[0]
    assert "2027-03-10" in message.subject
    text = message.part("text/plain")
    stale_part, _sep, rest = text.partition("Due for a refresh soon")
    assert "ubuntu_focal" in stale_part and "debian_bookworm" not in stale_part
    assert "debian_bookworm" in rest
    assert "centos_stream on 2027-03-20 (replacement: debian_bookworm)" in text
    assert "rocky_eight" not in text  # 60 days away: beyond the horizon
    assert "1 uncertain, 0 failed" in text
    assert "snapshot snap-1 in fr-par-1: no build row" in text and "img-2" not in text
    assert "https://factory.example.com/lifecycle/notices/" in text
    assert "centos_stream" in message.part("text/html")
    assert len(webhook.received) == 1 and webhook.received[0]["kind"] == "digest"


def test_the_digest_is_skipped_when_there_is_nothing_to_say(
    smtp_server,
    team,
) -> None:
    with time_machine.travel(dt.datetime(2027, 3, 10, 7, 30), tick=False):
        image = factories.os_image("debian_bookworm")
        ImageVersion.objects.create(image=image, name="2027-03-01", released_at=timezone.now())
        # An old janitor run was told on its own day.
        JanitorRun.objects.create(
            started_at=timezone.now() - dt.timedelta(days=3),
            finished_at=timezone.now() - dt.timedelta(days=3),
            findings=[{"kind": "snapshot", "where": "fr-par-1", "id": "s", "orphan": True}],
        )
        assert lifecycle_tasks.daily_digest_task() == "nothing to say"
    assert smtp_server.received == []
    assert not AlertSent.objects.exists()
