"""SQLite gets the same tuning however it is configured: by path, or by DATABASE_URL.

Each case reads the real settings in a fresh process, opens the real database file and asks
SQLite itself (journal mode, busy timeout), then checks that a Django transaction holds the
write lock from its first statement, which is what IMMEDIATE transactions are for.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sqlite3, sys
import django
django.setup()
from django.db import connection, transaction

with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
    print("journal_mode", cursor.fetchone()[0])
    cursor.execute("PRAGMA busy_timeout")
    print("busy_timeout", cursor.fetchone()[0])
with transaction.atomic():
    other = sqlite3.connect(sys.argv[1], timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        print("write_lock_at_begin no")
    except sqlite3.OperationalError as exc:
        print("write_lock_at_begin yes" if "locked" in str(exc) else f"error {exc}")
    finally:
        other.close()
"""


def sqlite_environment(tmp_path: Path, form: str) -> tuple[dict[str, str], Path]:
    """A production-like environment naming a fresh database file by `form` (path or url)."""
    database = tmp_path / "factory.sqlite3"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTEST") and k not in ("DATABASE_URL", "SQLITE_PATH")
    }
    env.update(
        FACTORY_VAR_DIR=str(tmp_path),
        DJANGO_SECRET_KEY="sqlite-tuning-test-key",
        FACTORY_LOCAL="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONPATH=str(ROOT),
    )
    if form == "path":
        env["SQLITE_PATH"] = str(database)
    else:
        env["DATABASE_URL"] = f"sqlite:///{database}"
    return env, database


@pytest.mark.parametrize("form", ["path", "url"])
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_and_immediate_transactions(
    tmp_path: Path, form: str
) -> None:
    env, database = sqlite_environment(tmp_path, form)
    env["SQLITE_BUSY_TIMEOUT"] = "7"

    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(database)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert probe.returncode == 0, probe.stderr
    assert database.exists()
    assert probe.stdout.split("\n")[:3] == [
        "journal_mode wal",
        "busy_timeout 7000",
        "write_lock_at_begin yes",
    ]
