"""Browser tests: Debian's Chromium driven through Playwright against a live server."""

from __future__ import annotations
