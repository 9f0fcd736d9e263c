"""Killing the sender in the middle of a 1,000-customer batch never sends an email twice.

Real processes on a real database file: the sender runs in a subprocess against a SQLite
file and a slowed-down aiosmtpd server in this process; it is killed with SIGKILL halfway,
a second sender takes over, and the SMTP server's own count is the judge.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lifecycle.notices import CLAIM_PAGE_SIZE
from tests.lifecycle.smtp import SMTPServer

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = 1000
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="SQLite-specific: DATABASE_URL is set"
)

# One image scheduled for deprecation and its customers, planned. `migrate` (run first) creates
# every table, lifecycle's included; the schema_editor loop is a leftover that creates nothing.
SETUP = f"""
import datetime as dt
from django.db import connection
from django.apps import apps
from django.utils import timezone
existing = set(connection.introspection.table_names())
with connection.schema_editor() as editor:
    for model in apps.get_app_config("lifecycle").get_models():
        if model._meta.db_table not in existing:
            editor.create_model(model)
from catalog.models import Category, Image
from lifecycle.models import Customer, Usage
from lifecycle import notices
image = Image.objects.create(label="ubuntu_focal", name="Ubuntu 20.04", architectures=["x86_64"],
    category=Category.objects.create(name="Distributions"), state="deprecation_scheduled",
    deprecation_date=timezone.localdate() + dt.timedelta(days=60))
customers = Customer.objects.bulk_create(
    Customer(project_id=f"00000000-0000-0000-0000-{{n:012d}}", name=f"C{{n}}",
             email=f"c{{n}}@example.com") for n in range({CUSTOMERS}))
Usage.objects.bulk_create(
    Usage(customer=c, image=image, zone="fr-par-1", server_id=f"srv-{{c.pk}}") for c in customers)
print(notices.plan_notices(image))
"""

SENDER = """
import django, sys
django.setup()
from lifecycle import notices
print(notices.send_due(lease_seconds=float(sys.argv[1]), rate=0))
"""


def _states(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT n.state, c.email FROM lifecycle_notice n JOIN lifecycle_customer c"
            " ON c.id = n.customer_id WHERE n.kind = '90'"
        ).fetchall()
    states: dict[str, list[str]] = {}
    for state, email in rows:
        states.setdefault(state, []).append(email)
    return states


def test_a_killed_sender_never_sends_twice_and_leaves_at_most_its_in_flight_uncertain(
    tmp_path: Path,
) -> None:
    smtp = SMTPServer().start()
    smtp.slow_down(0.004)
    db = tmp_path / "factory.sqlite3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "SQLITE_PATH": str(db),
        "DJANGO_SECRET_KEY": "crash-test-key",
        "FACTORY_LOCAL": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
    }
    env.pop("DATABASE_URL", None)
    try:
        run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True}
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], **run)
        subprocess.run([sys.executable, "manage.py", "shell", "-c", SETUP], **run)
        assert len(_states(db)["planned"]) == CUSTOMERS

        first = subprocess.Popen(
            [sys.executable, "-c", SENDER, "600"], cwd=ROOT, env=env, stdout=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while len(smtp.received) < CUSTOMERS // 3 and time.monotonic() < deadline:
            assert first.poll() is None, "the sender finished before it could be killed"
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait()
        at_kill = _states(db)
        assert at_kill.get("planned"), "the kill did not land in the middle of the batch"
        in_flight = len(at_kill.get("claimed", []))
        # One sequential worker holds at most one page of claims: it claims a page of rows in
        # one statement before sending any of them, and closes the sent ones in one statement
        # after the page, so a SIGKILL mid-page leaves up to the whole page claimed (the
        # subprocess has no NOTICE_CLAIM_PAGE_SIZE and no throttle, so the default applies).
        assert in_flight <= CLAIM_PAGE_SIZE

        # A restart after the lease: the dead worker's claim becomes uncertain, the rest go.
        second = subprocess.run([sys.executable, "-c", SENDER, "0"], **run)
        assert b"sent=" in second.stdout
    finally:
        smtp.stop()

    per_recipient = smtp.count_by_recipient()
    assert max(per_recipient.values()) == 1, "a customer got the same notice twice"
    final = _states(db)
    uncertain = set(final.get("uncertain", []))
    assert len(uncertain) <= in_flight
    everyone = {f"c{n}@example.com" for n in range(CUSTOMERS)}
    assert set(per_recipient) | uncertain == everyone
    assert set(final) <= {"sent", "uncertain"}
    assert set(final["sent"]) == set(per_recipient) - uncertain
