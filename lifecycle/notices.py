"""Planning and sending the deprecation notices, through the Notice ledger.

Planning writes one ledger row per (customer, image, notice) ahead of time: a row for each
offset still to come, only the most recent one already missed (sent at once), and a
correction when the date moved after a customer was told. Sending claims a page of due rows
(NOTICE_CLAIM_PAGE_SIZE, 50) with one guarded update before any of their SMTP conversations
and marks the sent ones with one update after, over one SMTP connection per run, throttled,
retrying only transient SMTP errors a bounded number of times. A claim older than the lease
belongs to a dead worker and becomes "uncertain": a killed sender leaves at most one page so.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
import time
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from builds.leases import worker_name
from catalog import dates
from catalog.choices import ImageState
from catalog.models import Image
from lifecycle import emails
from lifecycle.image_errors import DailyRun
from lifecycle.models import CORRECTION, Customer, Notice, NoticeState, Usage

log = logging.getLogger(__name__)

# Rows whose customer was told about a date (or may have been).
TOLD = (NoticeState.SENT, NoticeState.CLAIMED, NoticeState.UNCERTAIN)


def offsets() -> list[int]:
    """The notice offsets in days before the date, largest first (NOTICE_OFFSETS_DAYS)."""
    return sorted({int(o) for o in settings.NOTICE_OFFSETS_DAYS}, reverse=True)


def due_at_for(day: dt.date) -> dt.datetime:
    """When a notice of a given day goes out: NOTICE_SEND_HOUR, local time."""
    hour = settings.NOTICE_SEND_HOUR
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour)))


@dataclass
class PlanReport:
    """What planning one image did."""

    created: int = 0
    corrections: int = 0
    skipped: int = 0


def affected_customer_ids(image: Image) -> set[int]:
    """Customers running any version of the image, who have not unsubscribed."""
    return set(
        Usage.objects.filter(image=image, customer__unsubscribed_at__isnull=True)
        .values_list("customer_id", flat=True)
        .distinct()
    )


def _skip(pks: list[int], reason: str) -> int:
    done = 0
    for start in range(0, len(pks), 500):
        done += Notice.objects.filter(
            pk__in=pks[start : start + 500], state=NoticeState.PLANNED
        ).update(state=NoticeState.SKIPPED, last_error=reason)
    return done


# Planning writes its new rows this many at a time (one bulk insert each).
PLAN_FLUSH_ROWS = 1000


def plan_notices(image: Image, now: dt.datetime | None = None) -> PlanReport:
    """Write the ledger rows this image's deprecation needs now; idempotent."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    report = PlanReport()
    date = image.deprecation_date
    planned_rows = list(
        Notice.objects.filter(image=image, state=NoticeState.PLANNED).values_list(
            "pk", "customer_id", "deprecation_date"
        )
    )
    if date is None or image.state not in (
        ImageState.DEPRECATION_SCHEDULED,
        ImageState.DEPRECATED,
    ):
        report.skipped = _skip(
            [pk for pk, _c, _d in planned_rows], "The deprecation was cancelled."
        )
        return report

    affected = affected_customer_ids(image)
    report.skipped += _skip(
        [pk for pk, _c, d in planned_rows if d != date], "The deprecation date moved."
    )
    report.skipped += _skip(
        [pk for pk, c, d in planned_rows if d == date and c not in affected],
        "The customer no longer runs this image.",
    )
    if date < today:
        return report  # too late for any notice about this date

    # What each customer has: rows for this date by kind, and older dates they were told.
    have: dict[int, dict[str, dt.date]] = defaultdict(dict)
    told_before: dict[int, dt.date] = {}
    for customer_id, kind, announced, state, created_at in Notice.objects.filter(
        image=image
    ).values_list("customer_id", "kind", "deprecation_date", "state", "created_at"):
        if announced == date:
            if state != NoticeState.SKIPPED or kind == CORRECTION:
                have[customer_id][kind] = timezone.localdate(created_at)
        elif state in TOLD:
            told_before[customer_id] = max(announced, told_before.get(customer_id, announced))

    passed = [o for o in offsets() if dates.add_days(date, -o) <= today]
    latest_missed = min(passed) if passed else None
    new: list[Notice] = []
    for customer_id in affected:
        if len(new) >= PLAN_FLUSH_ROWS:
            # Written as we go: holding one unsaved instance per customer until the end
            # costs about 3 KB each (close to 300 MB for 100,000 customers).
            Notice.objects.bulk_create(new, batch_size=PLAN_FLUSH_ROWS, ignore_conflicts=True)
            report.created += len(new)
            new = []
        rows = have.get(customer_id, {})
        corrected_on = rows.get(CORRECTION)
        if customer_id in told_before and corrected_on is None:
            new.append(
                Notice(
                    customer_id=customer_id,
                    image=image,
                    kind=CORRECTION,
                    deprecation_date=date,
                    previous_date=told_before[customer_id],
                    due_at=now,
                )
            )
            report.corrections += 1
            corrected_on = today
        for offset in offsets():
            kind = str(offset)
            if kind in rows:
                continue
            due_day = dates.add_days(date, -offset)
            if due_day > today:
                new.append(
                    Notice(
                        customer_id=customer_id,
                        image=image,
                        kind=kind,
                        deprecation_date=date,
                        due_at=due_at_for(due_day),
                    )
                )
            elif offset == latest_missed and not (corrected_on and corrected_on >= due_day):
                # Late: only the most recent missed notice, at once (a correction written
                # on or after its day already told the customer the date).
                new.append(
                    Notice(
                        customer_id=customer_id,
                        image=image,
                        kind=kind,
                        deprecation_date=date,
                        due_at=min(now, due_at_for(due_day)),
                    )
                )
    Notice.objects.bulk_create(new, batch_size=PLAN_FLUSH_ROWS, ignore_conflicts=True)
    report.created += len(new)
    return report


PLANNING_JOB = "Notice planning"


def plan_all(now: dt.datetime | None = None) -> dict[str, PlanReport]:
    """Plan every image with a deprecation date (the scheduled task calls this).

    Each image on its own: an error is recorded on that image (and it is left out of the
    result), and the others are planned.
    """
    images = Image.objects.filter(deprecation_date__isnull=False).select_related("replacement")
    run = DailyRun(PLANNING_JOB)
    reports = {}
    for image in images:
        with run.each(image, "planning notices"):
            reports[image.label] = plan_notices(image, now)
    run.finish()
    return reports


@dataclass
class SendReport:
    """What one sending run did."""

    worker: str = ""
    sent: int = 0
    failed: int = 0
    retried: int = 0
    lost_claims: int = 0
    made_uncertain: int = 0


class Pacer:
    """Spaces calls to at most `rate` per second (0 or less: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_at = max(self.next_at, time.monotonic()) + self.interval


def _classify(exc: Exception) -> tuple[bool, str]:
    """(transient?, message) for an SMTP failure: 4xx and lost connections are transient."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        reply = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        return 400 <= code < 500, f"{code} {reply}"
    if isinstance(exc, smtplib.SMTPResponseException):
        raw = exc.smtp_error
        reply = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return 400 <= exc.smtp_code < 500, f"{exc.smtp_code} {reply}"
    if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
        return True, f"connection error: {exc}"
    return False, f"{type(exc).__name__}: {exc}"


def deliver(
    connection: BaseEmailBackend, message: EmailMessage, report: SendReport | None = None
) -> str:
    """Send one message; "" when it left, else the error after bounded retries."""
    retries = settings.NOTICE_SMTP_RETRIES
    backoff = float(settings.NOTICE_RETRY_BASE_SECONDS)
    error = ""
    for attempt in range(retries + 1):
        try:
            # Opened here, not by send_messages: it would close a connection it opened itself,
            # and the whole batch is meant to share one.
            connection.open()
            if connection.send_messages([message]) == 1:
                return ""
            transient, error = True, "the SMTP backend sent nothing"
        except Exception as exc:  # classified below; anything unknown is permanent
            transient, error = _classify(exc)
            if isinstance(exc, smtplib.SMTPServerDisconnected | OSError):
                connection.close()  # the next attempt opens a fresh connection
        if not transient:
            return f"permanent: {error}"
        if attempt < retries:
            if report is not None:
                report.retried += 1
            time.sleep(backoff * 2**attempt)
    return f"transient, gave up after {retries + 1} attempts: {error}"


def _usages_for(notices: list[Notice]) -> dict[tuple[int, int], list[Usage]]:
    customers = {n.customer_id for n in notices}
    images = {n.image_id for n in notices}
    found: dict[tuple[int, int], list[Usage]] = defaultdict(list)
    for usage in Usage.objects.filter(customer_id__in=customers, image_id__in=images).only(
        "customer_id", "image_id", "zone", "server_id", "server_name"
    ):
        found[(usage.customer_id, usage.image_id)].append(usage)
    return found


# How many rows one sender claims at once (NOTICE_CLAIM_PAGE_SIZE). A claim is one guarded
# UPDATE for the whole page and closing the sent ones another, instead of two per message;
# the price is the bound on what a killed sender leaves "uncertain": at most one page.
CLAIM_PAGE_SIZE = 50


def claim_page_size(rate: float) -> int:
    """Rows claimed per statement: NOTICE_CLAIM_PAGE_SIZE, but no more than one second's
    worth of sending when throttled (a slow page would hold its claims, and widen a crash's
    uncertain set, for many seconds while saving nothing: at 10 msg/s the writes are free).
    """
    size = max(1, settings.NOTICE_CLAIM_PAGE_SIZE)
    if rate and rate > 0:
        size = min(size, max(1, int(rate)))
    return size


def _due_ids(cutoff: dt.datetime, count: int) -> list[int]:
    """The next `count` due planned rows of subscribed customers, oldest first."""
    return list(
        Notice.objects.filter(
            state=NoticeState.PLANNED,
            due_at__lte=cutoff,
            customer__unsubscribed_at__isnull=True,
        )
        .order_by("due_at", "id")
        .values_list("pk", flat=True)[:count]
    )


def _send_page(
    pks: list[int],
    connection: BaseEmailBackend,
    pacer: Pacer,
    report: SendReport,
    hold_seconds: float,
) -> int:
    """Claim a page of rows in one statement, send them, close the sent ones in one
    statement; the number of rows claimed (and so sent, failed or given back).

    A page stops early once it has held its claims for `hold_seconds` (a mail server timing
    out on every message): the rest is given back, so that a live worker's claims never
    outlive the lease and get turned "uncertain" under it by another run.
    """
    # The ledger rows are claimed BEFORE any of their messages leaves: a crash from here on
    # leaves claimed rows (at most this page), never a second email.
    taken = Notice.claim_page(pks, report.worker, emails.message_id_domain())
    claimed_at = time.monotonic()
    report.lost_claims += len(pks) - len(taken)
    if not taken:
        return 0
    page: list[Notice] = []
    sent: list[int] = []
    handed: set[int] = set()  # rows whose message reached deliver(): it may have left
    try:
        page = list(
            Notice.objects.filter(pk__in=taken)
            .select_related("customer", "image", "image__replacement")
            .order_by("due_at", "id")
        )
        usages = _usages_for(page)
        for notice in page:
            if handed and time.monotonic() - claimed_at > hold_seconds:
                break  # the finally gives the rest back; the next page picks them up
            pacer.wait()
            try:
                message = emails.notice_email(
                    notice,
                    usages[(notice.customer_id, notice.image_id)],
                    message_id=notice.message_id,
                )
                build_error = ""
            except Exception as exc:  # a broken template must not stop the batch
                log.exception("notice %s cannot be rendered", notice.pk)
                message, build_error = None, f"cannot be rendered: {exc}"
            handed.add(notice.pk)
            error = build_error if message is None else deliver(connection, message, report)
            if error:
                notice.mark_failed(report.worker, error)  # rare, and each has its own error
                report.failed += 1
            else:
                sent.append(notice.pk)
    finally:
        # Also on the way out of an exception (an interrupt, a database error): what left is
        # recorded as sent, and what was never handed to SMTP is planned again, so only the
        # message in flight when it happened stays claimed (and becomes uncertain). Only a
        # hard kill leaves the whole page claimed.
        now = timezone.now()
        Notice.mark_page_sent(sent, report.worker, now)
        report.sent += len(sent)
        done = set(sent)
        for notice in page:
            if notice.pk in done:
                notice.state, notice.sent_at, notice.last_error = NoticeState.SENT, now, ""
        Notice.release_claims([pk for pk in taken if pk not in handed], report.worker)
    return len(taken)


def send_due(
    *,
    now: dt.datetime | None = None,
    worker: str | None = None,
    limit: int | None = None,
    lease_seconds: float | None = None,
    rate: float | None = None,
    batch_size: int = 500,
    connection: BaseEmailBackend | None = None,
) -> SendReport:
    """Send every due planned notice over one SMTP connection, a page at a time: claim the
    page's rows in one statement, send their messages, mark the sent ones in one statement.
    """
    report = SendReport(worker=worker or worker_name(per_call=True))
    lease = lease_seconds if lease_seconds is not None else settings.NOTICE_CLAIM_LEASE_SECONDS
    report.made_uncertain = Notice.expire_stale_claims(lease)
    rate = rate if rate is not None else float(settings.NOTICE_RATE_PER_SECOND)
    pacer = Pacer(rate)
    page_size = claim_page_size(rate)
    # Half the lease leaves a wide margin before another run may call our claims stale (at
    # least a second: a lease of 0 only means "expire every existing claim now").
    hold = max(float(lease) / 2, 1.0)
    connection = connection or get_connection()
    done = 0
    try:
        while limit is None or done < limit:
            # Candidates are read `batch_size` at a time (one ordered scan per batch), then
            # claimed and sent `page_size` at a time.
            ids = _due_ids(now or timezone.now(), batch_size)
            if not ids:
                break
            progressed = False
            for start in range(0, len(ids), page_size):
                room = page_size if limit is None else min(page_size, limit - done)
                if room <= 0:
                    break
                claimed = _send_page(ids[start : start + room], connection, pacer, report, hold)
                progressed = progressed or claimed > 0
                done += claimed
            if not progressed:
                break  # every candidate was taken by another worker: nothing left for us
    finally:
        connection.close()
    return report


def preview_notice(image: Image, customer: Customer) -> Notice:
    """An unsaved ledger row for a preview: the next notice this customer would get."""
    date = image.deprecation_date or dates.add_days(timezone.localdate(), offsets()[0])
    today = timezone.localdate()
    days_left = (date - today).days
    upcoming = [o for o in offsets() if o <= days_left] or [0]
    return Notice(
        customer=customer,
        image=image,
        kind=str(upcoming[0]),
        deprecation_date=date,
        due_at=timezone.now(),
    )


def send_test(image: Image, customer: Customer, to: str) -> str:
    """Send the preview of a customer's notice to `to`; "" on success, else the error."""
    notice = preview_notice(image, customer)
    usages = list(Usage.objects.filter(customer=customer, image=image))
    message = emails.notice_email(notice, usages, to=to, test=True)
    connection = get_connection()
    try:
        return deliver(connection, message)
    finally:
        connection.close()
