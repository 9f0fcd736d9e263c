"""Releases, refresh triggers, deprecation and customer notices (to come)."""

from __future__ import annotations
