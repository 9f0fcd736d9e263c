"""django-q2 entry points of the advisories app."""

from __future__ import annotations

from advisories import act, importer, matching


def import_osv_task() -> str:
    """The daily run: import the exports, match every version, queue security rebuilds.

    Failures are recorded per export, so the task itself does not raise."""
    results = importer.import_all()
    matched = matching.match_all()
    decisions = act.queue_security_rebuilds()
    failed = [r.export for r in results if not r.ok]
    summary = f"OSV import: {len(results) - len(failed)}/{len(results)} export(s) OK"
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    queued = [d.image for d in decisions if d.queued]
    return summary + f"; {matched} version(s) matched; security rebuilds: {len(queued)}"
