"""django-q2 entry points of the catalogue: thin wrappers around the models' work."""

from __future__ import annotations

from catalog.eol import import_all


def import_eol_task() -> str:
    """Import the upstream EOL dates of every OS image (the daily schedule runs this).

    Failures are recorded on the rows and in the log, so the task itself does not raise:
    a redelivery would only ask endoflife.date again within minutes.
    """
    results = import_all()
    failed = [result.product for result in results if not result.ok]
    warned = [result.product for result in results if result.warnings]
    summary = f"EOL import: {len(results) - len(failed)}/{len(results)} product(s) OK"
    if failed:
        summary += f"; failed: {', '.join(failed)}"
    if warned:
        summary += f"; need a manager: {', '.join(warned)}"
    return summary
