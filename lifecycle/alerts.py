"""Team alerts: the team is told without watching the dashboard.

- a build failure: one email to ALERT_EMAILS and, when ALERT_WEBHOOK_URL is set, a JSON POST
  `{"text": ..., "kind": ...}` (Slack, Mattermost and most chat tools take that shape);
- a test-run failure (a run that could not run, or a check failed or in error): the same;
- a daily digest: stale images and images due for a refresh, deprecations in the next
  30 days, uncertain and failed notices, the latest janitor findings; nothing is sent on a
  day with nothing to say.

Every alert is told once: its `AlertSent` ledger row, unique by (kind, key), is written
before the email and the webhook leave. A failed webhook or email is logged and recorded on
that row, never raised: alerting must not break the build that failed.

A webhook URL is a credential (Slack's and Mattermost's carry their token in the path): what
is logged or stored of a failure names only its scheme://host[:port].
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from builds.choices import BuildState
from builds.models import Build, JanitorRun
from catalog.choices import ImageState
from catalog.models import Image
from lifecycle import refresh
from lifecycle.models import AlertKind, AlertSent, Notice, NoticeState
from lifecycle.notices import deliver

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 10
DEPRECATION_HORIZON_DAYS = 30


def alert_emails() -> list[str]:
    """Who gets the alerts (setting ALERT_EMAILS, a list; empty: no emails)."""
    value = settings.ALERT_EMAILS
    if isinstance(value, str):
        value = value.split(",")
    return [address.strip() for address in value if address.strip()]


def webhook_url() -> str:
    """Where alerts are POSTed as JSON (setting ALERT_WEBHOOK_URL; empty: no webhook)."""
    return (settings.ALERT_WEBHOOK_URL or "").strip()


def site_url(path: str) -> str:
    """An absolute link to a dashboard page, for emails read outside the dashboard."""
    return settings.SITE_URL.rstrip("/") + path


@dataclass(frozen=True)
class Alert:
    """An alert's email parts and the one-line text of its webhook."""

    kind: str
    subject: str
    text: str
    html: str
    webhook_text: str


def render_alert(kind: str, context: dict[str, Any], webhook_text: str) -> Alert:
    """Render templates/emails/alerts/<kind>_{subject.txt,body.txt,body.html}."""
    subject = render_to_string(f"emails/alerts/{kind}_subject.txt", context)
    text = render_to_string(f"emails/alerts/{kind}_body.txt", context)
    html = render_to_string(f"emails/alerts/{kind}_body.html", context)
    # A newline in a subject would end the header: keep one line.
    return Alert(kind, " ".join(subject.split()), text, html, webhook_text)


ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()]+")


def url_origin(url: str) -> str:
    """scheme://host[:port] of `url`: all that may be logged or stored of a webhook URL
    (no userinfo, path, query or fragment)."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(an unparsable URL)"
    if not parts.scheme or not host:
        return "(an unparsable URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def redact_url(text: str, url: str) -> str:
    """`text` (an exception's message) with `url` reduced to its origin everywhere.

    requests and urllib3 quote the URL whole ("... for url: http://host/path?q"), as sent
    (normalized), or only its path and query ("Max retries exceeded with url: /path?q").
    """
    origin = url_origin(url)
    sent = url
    # An invalid URL fails here as it failed when posting: the text holds it as given.
    with contextlib.suppress(Exception):
        sent = requests.Request("POST", url).prepare().url or url
    for whole in sorted({url, url.strip(), sent}, key=len, reverse=True):
        if whole:
            text = text.replace(whole, origin)
    text = ABSOLUTE_URL.sub(lambda match: url_origin(match.group(0)), text)
    for candidate in (url, sent):
        try:
            parts = urlsplit(candidate.strip())
        except ValueError:
            continue
        tails = [parts.path + ("?" + parts.query if parts.query else ""), parts.query, parts.path]
        for tail in sorted(set(tails), key=len, reverse=True):
            if len(tail) > 1:
                text = text.replace(tail, "[path hidden]")
    return text


def post_webhook(kind: str, text: str) -> str:
    """POST {"text", "kind"} to ALERT_WEBHOOK_URL; "" when it went (or none is set), else why
    (naming only the URL's scheme://host[:port])."""
    url = webhook_url()
    if not url:
        return ""
    try:
        response = requests.post(
            url, json={"text": text, "kind": kind}, timeout=WEBHOOK_TIMEOUT_SECONDS
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        origin, reason = url_origin(url), redact_url(f"{type(exc).__name__}: {exc}", url)
        log.warning("alert webhook (%s) to %s failed: %s", kind, origin, reason)
        return f"webhook to {origin}: {reason}"
    return ""


def send_email(alert: Alert, to: list[str]) -> str:
    """Send one alert email to the team over one connection; "" when it left, else why."""
    if not to:
        return ""
    message = EmailMultiAlternatives(
        subject=alert.subject, body=alert.text, from_email=settings.DEFAULT_FROM_EMAIL, to=to
    )
    message.attach_alternative(alert.html, "text/html")
    connection = get_connection()
    try:
        error = deliver(connection, message)
    except Exception as exc:  # alerting must never break the caller
        error = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    if error:
        log.warning("alert email (%s) failed: %s", alert.kind, error)
        return f"email: {error}"
    return ""


def send_once(kind: str, key: str, alert: Alert) -> bool:
    """Send an alert unless its ledger row exists; True when this call sent it."""
    to = alert_emails()
    if not to and not webhook_url():
        return False  # nobody to tell: no row, so configuring alerts later is not blocked
    row = AlertSent.claim(kind, key)
    if row is None:
        return False
    errors = [send_email(alert, to), post_webhook(kind, alert.webhook_text)]
    row.close("; ".join(e for e in errors if e))
    return True


# --- failures --------------------------------------------------------------------------------


def build_failed(build: Build) -> bool:
    """Tell the team that a build failed (image, arch, stage, reason, link); once per build."""
    build.refresh_from_db()
    if build.state != BuildState.FAILED:
        return False
    image = build.image
    context = {
        "build": build,
        "image": image,
        "arch": build.arch,
        "stage": build.failure_stage or "unknown",
        "reason": build.failure_reason or "No reason recorded.",
        "url": site_url(build.get_absolute_url()),
    }
    text = (
        f"Build #{build.pk} of {image.label} ({build.arch}) failed at "
        f"{context['stage']}: {context['reason']} {context['url']}"
    )
    alert = render_alert(AlertKind.BUILD_FAILED, context, text)
    return send_once(AlertKind.BUILD_FAILED, str(build.pk), alert)


def build_failed_alert(sender: Any, build: Build, **kwargs: Any) -> None:
    """Receiver of builds' `build_failed`: the team is told (`build_failed`)."""
    build_failed(build)


def test_run_failed(
    *, key: str, image: Image, arch: str, zone: str, reason: str, path: str
) -> bool:
    """Tell the team that a test run failed; once per `key` (the test run's id).

    Called by `test_run_ended_alert` when a run ends with a check that did not pass.
    """
    context = {
        "key": key,
        "image": image,
        "arch": arch,
        "zone": zone,
        "reason": reason or "No reason recorded.",
        "url": site_url(path),
    }
    text = (
        f"Test run {key} of {image.label} ({arch}, {zone}) failed: "
        f"{context['reason']} {context['url']}"
    )
    alert = render_alert(AlertKind.TEST_RUN_FAILED, context, text)
    return send_once(AlertKind.TEST_RUN_FAILED, key, alert)


def test_run_ended_alert(sender: Any, test_run: Any, **kwargs: Any) -> None:
    """Receiver of builds' `test_run_ended`: a run that could not run, or ended with a check
    failed or in error, is told to the team (a cancelled run is not a failure)."""
    from builds.choices import CheckState, TestRunState

    run = test_run
    if run.state == TestRunState.CANCELLED:
        return
    bad = list(
        run.results.filter(state__in=(CheckState.FAILED, CheckState.ERROR)).order_by("check_name")
    )
    if run.state != TestRunState.ERROR and not bad:
        return
    reasons = [f"{r.check_name}: {r.reason or r.get_state_display().lower()}" for r in bad]
    reason = run.error or "; ".join(reasons)
    if run.error and reasons:
        reason += "; " + "; ".join(reasons)
    version = run.version
    try:
        test_run_failed(
            key=str(run.pk),
            image=version.image,
            arch=version.arch,
            zone=run.zone.code,
            reason=f"{len(bad)} check(s) did not pass. {reason}" if bad else reason,
            path=version.get_absolute_url(),
        )
    except Exception:  # alerting must never break the run that failed
        log.exception("test run %s: the failure alert could not be sent", run.pk)


def connect() -> None:
    """Connect the team alerts to the signals they listen to (once)."""
    from builds.signals import build_failed as build_failed_signal
    from builds.signals import test_run_ended

    build_failed_signal.connect(build_failed_alert, dispatch_uid="lifecycle.alerts.build_failed")
    test_run_ended.connect(test_run_ended_alert, dispatch_uid="lifecycle.alerts.test_run_ended")


# --- the daily digest ------------------------------------------------------------------------


@dataclass
class Digest:
    """What the daily digest says; empty sections are left out, an empty digest is not sent."""

    day: dt.date
    stale: list[refresh.StaleStatus] = field(default_factory=list)
    due_soon: list[refresh.StaleStatus] = field(default_factory=list)
    deprecations: list[Image] = field(default_factory=list)
    uncertain_notices: int = 0
    failed_notices: int = 0
    janitor_run: JanitorRun | None = None
    janitor_orphans: list[dict] = field(default_factory=list)
    janitor_errors: list = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (
            self.stale
            or self.due_soon
            or self.deprecations
            or self.uncertain_notices
            or self.failed_notices
            or self.janitor_orphans
            or self.janitor_errors
        )

    def summary(self) -> str:
        """One line for the webhook."""
        parts = [
            f"{len(self.stale)} stale images" if self.stale else "",
            f"{len(self.due_soon)} due for refresh soon" if self.due_soon else "",
            f"{len(self.deprecations)} deprecations within {DEPRECATION_HORIZON_DAYS} days"
            if self.deprecations
            else "",
            f"{self.uncertain_notices} uncertain notices" if self.uncertain_notices else "",
            f"{self.failed_notices} failed notices" if self.failed_notices else "",
            f"{len(self.janitor_orphans)} janitor findings" if self.janitor_orphans else "",
            f"{len(self.janitor_errors)} janitor errors" if self.janitor_errors else "",
        ]
        return f"Image factory digest {self.day:%Y-%m-%d}: " + ", ".join(p for p in parts if p)


def build_digest(now: dt.datetime | None = None) -> Digest:
    """Gather the digest's sections as of `now`.

    Janitor findings are those of the latest run of the last day, so that a finding is
    told once per janitor run rather than every day until the next run.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    digest = Digest(day=today)
    margin = refresh.refresh_margin_days()
    for status in refresh.refresh_status(today=today):
        if status.days_left is None:
            continue
        if status.stale:
            digest.stale.append(status)
        elif status.days_left <= margin:
            digest.due_soon.append(status)
    digest.deprecations = list(
        Image.objects.filter(
            state=ImageState.DEPRECATION_SCHEDULED,
            deprecation_date__gte=today,
            deprecation_date__lte=today + dt.timedelta(days=DEPRECATION_HORIZON_DAYS),
        )
        .select_related("replacement")
        .order_by("deprecation_date", "label")
    )
    digest.uncertain_notices = Notice.objects.filter(state=NoticeState.UNCERTAIN).count()
    digest.failed_notices = Notice.objects.filter(state=NoticeState.FAILED).count()
    run = (
        JanitorRun.objects.filter(
            started_at__gte=now - dt.timedelta(days=1), finished_at__isnull=False
        )
        .order_by("-started_at", "-id")
        .first()
    )
    if run is not None:
        digest.janitor_run = run
        digest.janitor_orphans = [f for f in run.findings if f.get("orphan")]
        digest.janitor_errors = list(run.errors)
    return digest


def send_daily_digest(now: dt.datetime | None = None) -> Digest:
    """Send the day's digest to the team once; nothing on a day with nothing to say."""
    digest = build_digest(now)
    if digest.is_empty:
        log.info("digest %s: nothing to say", digest.day)
        return digest
    context = {
        "digest": digest,
        "horizon": DEPRECATION_HORIZON_DAYS,
        "overview_url": site_url(reverse("catalog:overview")),
        "notices_url": site_url(reverse("lifecycle:notices")),
        "janitor_url": site_url(reverse("builds:janitor")),
    }
    alert = render_alert(AlertKind.DIGEST, context, digest.summary())
    send_once(AlertKind.DIGEST, digest.day.isoformat(), alert)
    return digest
