"""Helpers of the test-run tests: localcloud with real VMs, published fixture images."""

from __future__ import annotations
