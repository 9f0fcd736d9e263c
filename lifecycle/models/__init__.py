"""The lifecycle app's models, one module per concern.

- releases: Release (who released which version, when, with what override reason)
- notices: Customer, Usage, Notice (the send ledger), Unsubscribe
- triggers: SecurityAdvisory and other recorded refresh triggers
- alerts: AlertSent (the ledger of team alerts and request status emails)
- requests: ImageRequest, Requester, RequestSubmission, RequestStatusChange
- parity: ZoneParityGap (what the daily zone parity check found)
- adoption: MarketplaceLabel (Marketplace labels adoption could not match to an image)
"""

from __future__ import annotations

from lifecycle.models.adoption import *  # noqa: F403
from lifecycle.models.alerts import *  # noqa: F403
from lifecycle.models.notices import *  # noqa: F403
from lifecycle.models.parity import *  # noqa: F403
from lifecycle.models.releases import *  # noqa: F403
from lifecycle.models.requests import *  # noqa: F403
from lifecycle.models.triggers import *  # noqa: F403
