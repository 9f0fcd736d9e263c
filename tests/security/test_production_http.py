"""In production the dashboard is HTTPS only, and says so: a redirect, HSTS, and the scheme a
TLS-terminating proxy reports, each configurable from the environment.

Each case starts a process with a production environment (DEBUG off, FACTORY_LOCAL unset)
and sends requests through the whole middleware stack with Django's test client there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.config.environment import ROOT, production_environment

REQUESTS = """
import json, django
django.setup()
from django.test import Client

client = Client(HTTP_HOST="factory.example.com")
answers = {}
for name, path, extra in [
    ("plain", "/accounts/login/", {}),
    ("tls", "/accounts/login/", {"secure": True}),
    ("proxied", "/accounts/login/", {"HTTP_X_FORWARDED_PROTO": "https"}),
    ("health", "/healthz", {}),
]:
    response = client.get(path, **extra)
    answers[name] = {
        "status": response.status_code,
        "location": response.get("Location", ""),
        "hsts": response.get("Strict-Transport-Security", ""),
    }
print(json.dumps(answers))
"""


def answers(tmp_path: Path, **env: str) -> dict[str, dict]:
    environment = production_environment(tmp_path)
    environment.update(env)
    run = subprocess.run(
        [sys.executable, "-c", REQUESTS],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_production_redirects_plain_http_to_https_and_sends_hsts_for_a_year(tmp_path) -> None:
    got = answers(tmp_path)

    assert got["plain"]["status"] == 301
    assert got["plain"]["location"] == "https://factory.example.com/accounts/login/"
    assert got["tls"]["status"] == 200
    assert got["tls"]["hsts"] == "max-age=31536000; includeSubDomains; preload"


def test_a_load_balancers_plain_health_check_is_not_redirected(tmp_path) -> None:
    assert answers(tmp_path)["health"]["status"] == 200


def test_without_a_proxy_header_setting_a_forwarded_proto_header_is_not_trusted(
    tmp_path,
) -> None:
    assert answers(tmp_path)["proxied"]["status"] == 301


def test_behind_a_tls_proxy_the_header_it_sets_marks_the_request_secure(tmp_path) -> None:
    got = answers(tmp_path, DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")

    assert got["proxied"]["status"] == 200
    assert got["proxied"]["hsts"].startswith("max-age=31536000")


def test_hsts_and_the_redirect_follow_the_environment(tmp_path) -> None:
    got = answers(
        tmp_path,
        DJANGO_SSL_REDIRECT="0",
        DJANGO_HSTS_SECONDS="3600",
        DJANGO_HSTS_INCLUDE_SUBDOMAINS="0",
        DJANGO_HSTS_PRELOAD="0",
    )

    assert got["plain"]["status"] == 200
    assert got["tls"]["hsts"] == "max-age=3600"


def test_a_developer_machine_on_plain_http_gets_neither(tmp_path) -> None:
    got = answers(tmp_path, FACTORY_LOCAL="1")

    assert got["plain"]["status"] == 200
    assert got["tls"]["hsts"] == ""


def test_a_malformed_proxy_header_name_stops_the_start(tmp_path) -> None:
    environment = production_environment(tmp_path)
    environment["DJANGO_SECURE_PROXY_SSL_HEADER"] = "X-Forwarded-Proto: https"
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "DJANGO_SECURE_PROXY_SSL_HEADER" in run.stderr
