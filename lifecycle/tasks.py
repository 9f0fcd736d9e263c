"""django-q2 entry points of the lifecycle app: thin, the work is in the modules.

Each task calls one module function and returns a one-line summary (what django-q2 keeps as
the result); the rows those functions write (UpstreamCheck, Build, Notice, AlertSent,
AuditEntry) are what the dashboard reads. The recurring ones are listed in
lifecycle.schedules.
"""

from __future__ import annotations

import logging
from collections import Counter

from lifecycle import alerts, deprecation, image_requests, notices, parity, refresh, usage
from lifecycle.models import Requester, RequestStatusChange

log = logging.getLogger(__name__)


# Refresh triggers and deprecation


def queue_stale_rebuilds_task() -> str:
    """Queue rebuilds of images that would become stale within the margin."""
    results = refresh.queue_stale_rebuilds()
    created = sum(1 for r in results if r.created)
    return f"refresh cadence: {created} build(s) queued, {len(results) - created} already active"


def check_upstreams_task() -> str:
    """Check every OS image channel's current serial and rebuild what changed."""
    checks = refresh.check_all_upstreams()
    counts = Counter(check.outcome for check in checks)
    details = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
    return f"upstream checks: {len(checks)} ({details or 'no source'})"


def zone_parity_task() -> str:
    """Check that every current version is available and offered in every enabled zone."""
    return str(parity.check())


def deprecation_transitions_task() -> str:
    """Schedule deprecations by policy; deprecate and retire what is due today."""
    return str(deprecation.run_transitions())


# Notices


def refresh_usage_task() -> str:
    """Daily: refresh who runs what (a failure keeps the last known usage)."""
    return usage.refresh_usage().message


def send_due_notices_task() -> str:
    """Frequently: plan what deprecations need, then send what is due."""
    plans = notices.plan_all()
    report = notices.send_due()
    created = sum(plan.created for plan in plans.values())
    summary = (
        f"planned {created}, sent {report.sent}, failed {report.failed}, "
        f"uncertain {report.made_uncertain}"
    )
    log.info("notices: %s", summary)
    return summary


# Team alerts and image requests


def daily_digest_task() -> str:
    """Daily: send the team's digest (nothing on a day with nothing to say)."""
    digest = alerts.send_daily_digest()
    return "nothing to say" if digest.is_empty else digest.summary()


def send_request_confirmation_task(requester_id: int) -> str:
    """After the public form: send the requester the link that confirms their address."""
    requester = Requester.objects.select_related("request").filter(pk=requester_id).first()
    if requester is None:
        return f"requester {requester_id} no longer exists"
    if requester.is_confirmed:
        return f"requester {requester_id} is already confirmed"
    error = image_requests.send_confirmation(requester)
    return f"confirmation of requester {requester_id}: {error or 'sent'}"


def send_request_status_emails_task(change_id: int) -> str:
    """After a manager moved a request: tell each confirmed requester, once."""
    change = RequestStatusChange.objects.select_related("request").filter(pk=change_id).first()
    if change is None:
        return f"status change {change_id} no longer exists"
    report = image_requests.send_status_emails(change)
    log.info("request status change %s: %s", change_id, report)
    return str(report)
