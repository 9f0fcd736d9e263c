"""Login throttling (django-axes): wrong passwords for one user name from one address lock
that pair out for a while, with a clear message on the login page; nobody else is locked."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from tests.config.environment import ROOT, production_environment

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """PBKDF2 costs most of a second per login on a busy machine; these tests log in a lot."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def log_in(username: str, password: str, address: str = "192.0.2.10"):
    return Client(REMOTE_ADDR=address).post(LOGIN, {"username": username, "password": password})


def signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/"


def fail(user: User, times: int, address: str = "192.0.2.10") -> None:
    for _ in range(times):
        assert log_in(user.username, "wrong-password", address).status_code in (200, 429)


def test_five_wrong_passwords_lock_the_user_name_from_that_address(viewer) -> None:
    fail(viewer, 5)

    response = log_in(viewer.username, "pw-viola")

    assert response.status_code == 429
    assert not signed_in(response)
    page = response.content.decode()
    assert "Too many failed logins for this user name from your address" in page
    assert "paused for 15 minutes" in page
    # It is the login page itself: the form is there, the user name filled in.
    assert 'name="password"' in page and 'value="viola"' in page


def test_four_wrong_passwords_do_not_lock(viewer) -> None:
    fail(viewer, 4)

    assert signed_in(log_in(viewer.username, "pw-viola"))


def test_a_successful_login_starts_the_count_again(viewer) -> None:
    fail(viewer, 4)
    assert signed_in(log_in(viewer.username, "pw-viola"))
    fail(viewer, 4)

    assert signed_in(log_in(viewer.username, "pw-viola"))


def test_the_lock_leaves_other_addresses_and_other_user_names_alone(viewer, manager) -> None:
    fail(viewer, 5, address="192.0.2.10")

    assert signed_in(log_in(viewer.username, "pw-viola", address="198.51.100.7"))
    assert signed_in(log_in(manager.username, "pw-manon", address="192.0.2.10"))


def test_the_lock_ends_after_the_cool_off(viewer) -> None:
    with time_machine.travel(dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC), tick=False) as clock:
        fail(viewer, 5)
        clock.shift(dt.timedelta(minutes=14))
        assert log_in(viewer.username, "pw-viola").status_code == 429
        clock.shift(dt.timedelta(minutes=16))
        assert signed_in(log_in(viewer.username, "pw-viola"))


def test_a_failed_try_during_the_lock_starts_the_wait_again(viewer) -> None:
    with time_machine.travel(dt.datetime(2026, 5, 4, 9, 0, tzinfo=dt.UTC), tick=False) as clock:
        fail(viewer, 5)
        clock.shift(dt.timedelta(minutes=10))
        fail(viewer, 1)
        # 16 minutes after the lock began, but 6 after the last try: still locked (and this
        # try, right password or not, starts the wait again).
        clock.shift(dt.timedelta(minutes=6))
        assert log_in(viewer.username, "pw-viola").status_code == 429
        clock.shift(dt.timedelta(minutes=16))
        assert signed_in(log_in(viewer.username, "pw-viola"))


def test_the_address_is_the_one_the_trusted_proxy_saw(settings, viewer) -> None:
    settings.TRUSTED_PROXY_COUNT = 1

    def through_proxy(client_address: str, password: str):
        return Client(REMOTE_ADDR="10.0.0.1").post(
            LOGIN,
            {"username": viewer.username, "password": password},
            HTTP_X_FORWARDED_FOR=client_address,
        )

    for _ in range(5):
        through_proxy("192.0.2.10", "wrong-password")

    assert through_proxy("192.0.2.10", "pw-viola").status_code == 429
    assert signed_in(through_proxy("198.51.100.7", "pw-viola"))


def test_the_limits_come_from_the_environment(tmp_path) -> None:
    env = production_environment(tmp_path)
    env.update(LOGIN_FAILURE_LIMIT="3", LOGIN_LOCKOUT_MINUTES="45")
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s;"
            "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds(),"
            " s.AXES_LOCKOUT_PARAMETERS)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "3 2700.0 [['username', 'ip_address']]"
