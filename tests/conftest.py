"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from catalog import roles
from tests.fixtures.images import debian_fixture_image


def _user(username: str, role: str | None, **extra: object) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(db) -> User:
    return _user("viola", roles.VIEWER)


@pytest.fixture
def manager(db) -> User:
    return _user("manon", roles.CATALOGUE_MANAGER)


@pytest.fixture
def release_manager(db) -> User:
    return _user("remi", roles.RELEASE_MANAGER)


@pytest.fixture
def admin_user(db) -> User:
    return _user("ada", None, is_superuser=True, is_staff=True)


@pytest.fixture(scope="session")
def debian_qcow2() -> Path:
    """The cached small Debian bookworm image (read-only: copy or overlay it before writing)."""
    return debian_fixture_image()


@pytest.fixture(autouse=True)
def _builds_skip_test_stage(settings) -> None:
    """Builds in tests stop after publishing unless a test switches the test stage on: the
    stage boots real servers, which only the `vm` tier's localcloud can run."""
    settings.BUILD_TEST_STAGE = False


@pytest.fixture(autouse=True)
def _served_over_plain_http(settings) -> None:
    """The test client and the live server speak plain HTTP: no redirect to HTTPS, whatever
    the environment (`make` sets FACTORY_LOCAL=1; a bare `pytest` run is "production")."""
    settings.SECURE_SSL_REDIRECT = False
