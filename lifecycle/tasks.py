"""django-q2 entry points of the refresh triggers and deprecation: the daily schedules.

Each task calls one module function and returns a one-line summary (what django-q2 keeps as
the result); the rows those functions write (UpstreamCheck, Build, AuditEntry) are what the
dashboard reads.
"""

from __future__ import annotations

from collections import Counter

from lifecycle import deprecation, refresh


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


def deprecation_transitions_task() -> str:
    """Schedule deprecations by policy; deprecate and retire what is due today."""
    return str(deprecation.run_transitions())
