"""SQLite under load from a web server and a worker at once never says "database is locked".

This runs real processes on a real database file: a gunicorn web server with several
threads taking recipe edits, and a worker process writing audit entries in transactions.
It runs twice: with the database named by SQLITE_PATH and by DATABASE_URL=sqlite:///...,
which must get the same tuning.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="SQLite-specific: DATABASE_URL is set"
)

WORKER = """
import django, sys
django.setup()
from django.db import transaction
from catalog import audit
for i in range(int(sys.argv[1])):
    with transaction.atomic():
        # Several writes per transaction, like a worker recording a stage's outputs.
        for j in range(3):
            audit.record("worker.write", message=f"{i}-{j}")
print("worker done")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manage(env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True
    )


@pytest.mark.parametrize("form", ["path", "url"])
def test_web_requests_and_a_worker_write_at_once_without_locking_errors(tmp_path, form) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")},
        "DJANGO_SECRET_KEY": "concurrency-test-key",
        "FACTORY_LOCAL": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DATABASE_URL", None)
    env.pop("SQLITE_PATH", None)
    if form == "path":
        env["SQLITE_PATH"] = str(tmp_path / "factory.sqlite3")
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'factory.sqlite3'}"
    _manage(env, "migrate", "--noinput")
    _manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User, Group;"
        "u = User.objects.create_user('m', password='pw-m');"
        "u.groups.add(Group.objects.get(name='Catalogue manager'));"
        "from catalog.models import Category, Image;"
        "Image.objects.create(label='debian_bookworm', name='Debian 12',"
        " category=Category.objects.create(name='Distributions'), architectures=['x86_64'])",
    )
    port = _free_port()
    web = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.2)
        session = requests.Session()
        page = session.get(f"{base}/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        logged_in = session.post(
            f"{base}/accounts/login/",
            data={"username": "m", "password": "pw-m", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/accounts/login/"},
        )
        assert logged_in.url.rstrip("/") == base, "login failed"
        csrf = session.cookies["csrftoken"]

        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, "300"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def add_step(i: int) -> int:
            return session.post(
                f"{base}/images/debian_bookworm/steps/add/",
                data={"type": "install_packages", "p_packages": f"pkg{i}", "enabled": "on"},
                headers={"X-CSRFToken": csrf, "Referer": base},
                allow_redirects=False,
                timeout=120,
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(add_step, range(120)))
        worker_output, _ = worker.communicate(timeout=300)
    finally:
        web.terminate()
        web_output, _ = web.communicate(timeout=30)

    assert worker.returncode == 0, worker_output
    assert statuses == [302] * 120, web_output[-3000:]
    assert "database is locked" not in web_output + worker_output
    check = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-v",
            "0",
            "-c",
            "from catalog.models import RecipeStep, AuditEntry;"
            "A = AuditEntry.objects;"
            "print(RecipeStep.objects.count(), A.filter(action='worker.write').count(),"
            " A.filter(action='recipe.step_added').count())",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert check.stdout.split() == ["120", "900", "120"]
