"""A session lasts a bounded time (12 hours unless DJANGO_SESSION_COOKIE_AGE says otherwise),
and a new password passes all of Django's validators, on a page every user can reach."""

from __future__ import annotations

import subprocess
import sys

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from tests.config.environment import ROOT, production_environment

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_a_session_cookie_lasts_twelve_hours(viewer) -> None:
    response = Client().post("/accounts/login/", {"username": "viola", "password": "pw-viola"})

    assert response.status_code == 302
    assert response.cookies["sessionid"]["max-age"] == 12 * 3600


def test_a_session_is_over_after_twelve_hours_even_if_used_meanwhile(viewer) -> None:
    client = Client()
    with time_machine.travel("2026-05-04 08:00Z", tick=False) as clock:
        client.post("/accounts/login/", {"username": "viola", "password": "pw-viola"})
        clock.shift(6 * 3600)
        assert client.get("/").status_code == 200
        clock.shift(6 * 3600 + 60)
        response = client.get("/")

    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_session_age_comes_from_the_environment(tmp_path) -> None:
    env = production_environment(tmp_path)
    env["DJANGO_SESSION_COOKIE_AGE"] = "3600"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings;"
            "print(settings.SESSION_COOKIE_AGE)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "3600"


def change_password(client: Client, old: str, new: str):
    return client.post(
        "/accounts/password/",
        {"old_password": old, "new_password1": new, "new_password2": new},
    )


@pytest.mark.parametrize(
    ("new_password", "refusal"),
    [
        ("40817263549102", "This password is entirely numeric."),
        ("short9!", "This password is too short."),
        ("password123", "This password is too common."),
        ("viola2026", "The password is too similar to the username."),
    ],
)
def test_a_weak_new_password_is_refused_with_the_reason(
    client, viewer, new_password, refusal
) -> None:
    client.force_login(viewer)

    response = change_password(client, "pw-viola", new_password)

    assert response.status_code == 200
    assert refusal in response.content.decode()
    viewer.refresh_from_db()
    assert viewer.check_password("pw-viola")


def test_a_strong_new_password_is_taken_and_the_session_stays(client, viewer) -> None:
    client.force_login(viewer)

    response = change_password(client, "pw-viola", "quarry-lantern-orbit-52")

    assert response.status_code == 302 and response["Location"] == "/accounts/password/done/"
    assert client.get(response["Location"]).status_code == 200
    assert User.objects.get(pk=viewer.pk).check_password("quarry-lantern-orbit-52")
