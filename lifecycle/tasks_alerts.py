"""Entry points of the team alerts and image requests: thin, the work is in the modules."""

from __future__ import annotations

import logging

from lifecycle import alerts, image_requests
from lifecycle.models import Requester, RequestStatusChange

log = logging.getLogger(__name__)


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
