"""Fixtures for the lifecycle tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def deprecation_policy(settings) -> None:
    """The deprecation policy the deprecation tests assume: 90 days of grace, notices 90, 30,
    7 and 0 days ahead, artefacts kept 180 days."""
    settings.DEPRECATION_GRACE_DAYS = 90
    settings.NOTICE_OFFSETS_DAYS = [90, 30, 7, 0]
    settings.RETENTION_DAYS = 180
