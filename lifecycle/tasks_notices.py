"""Entry points of the notice schedules: thin, the work is in lifecycle.notices/usage."""

from __future__ import annotations

import logging

from lifecycle import notices, usage

log = logging.getLogger(__name__)


def refresh_usage_task() -> str:
    """Daily: refresh who runs what (a failure keeps the last known usage)."""
    refresh = usage.refresh_usage()
    return refresh.message


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
