"""Fixtures shared by every test folder."""

from __future__ import annotations

import functools
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User

from catalog import roles
from tests.builds.upstream_server import (
    GpgKey,
    UpstreamServer,
    make_key,
    make_qcow2,
    make_self_signed,
)
from tests.catalog.eol_server import EolServer
from tests.cloud.localcloud import ACCESS_KEY, PROJECT_ID, SECRET_KEY, Cloud, localcloud_process
from tests.fixtures.images import debian_fixture_image
from tests.lifecycle.smtp import SMTPServer


@functools.cache
def _stored_password(raw: str, hashers: tuple[str, ...]) -> str:
    """A test user's password as the hasher in use stores it, hashed once per process and
    hasher list: the project's hash is slow by design (half a second or more here), and most
    tests make users."""
    return make_password(raw)


def _user(username: str, role: str | None, **extra: object) -> User:
    stored = _stored_password("pw-" + username, tuple(django_settings.PASSWORD_HASHERS))
    user = User.objects.create(username=username, password=stored, **extra)
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


# --- servers and artefacts that tests in several folders use ---------------------------------


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Cloud]:
    """A clean localcloud, the SCW_* environment pointed at it, and fast cloud settings."""
    process = localcloud_process()
    process.operator("POST", "reset")
    wrapped = Cloud(process)
    wrapped.wipe_objects()
    endpoints = requests.get(f"{process.url}/localcloud/v1/endpoints", timeout=5).json()["s3"]
    for name in ("SCW_CONFIG_PATH", "SCW_PROFILE", "SCW_DEFAULT_ORGANIZATION_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCW_API_URL", process.url)
    monkeypatch.setenv("SCW_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SCW_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("SCW_DEFAULT_PROJECT_ID", PROJECT_ID)
    monkeypatch.setenv("SCW_DEFAULT_ZONE", "fr-par-1")
    monkeypatch.setenv("SCW_DEFAULT_REGION", "fr-par")
    monkeypatch.setenv("SCW_S3_ENDPOINTS", ",".join(f"{r}={u}" for r, u in endpoints.items()))
    settings.CLOUD_POLL_SECONDS = 0.05
    settings.CLOUD_POLL_MAX_SECONDS = 0.2
    settings.CLOUD_RETRY_BASE_SECONDS = 0.05
    settings.CLOUD_RETRY_MAX_SECONDS = 3
    settings.CLOUD_REQUEST_TIMEOUT_SECONDS = 10
    settings.CLOUD_RECOVER_SECONDS = 5
    settings.PUBLISH_BUCKET = "factory-test-artefacts"
    settings.PUBLISH_IMPORT_TIMEOUT_SECONDS = 20
    settings.PUBLISH_IMAGE_TIMEOUT_SECONDS = 20
    yield wrapped
    process.operator("DELETE", "faults")


@pytest.fixture(scope="session")
def qcow2_artefact(tmp_path_factory) -> Path:
    """A small valid QCOW2 (1 GiB virtual, zlib-compressed, no backing file)."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    root = tmp_path_factory.mktemp("qcow2")
    raw = root / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(raw), "1G"], check=True)
    final = root / "artefact.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-c", "-O", "qcow2", str(raw), str(final)], check=True
    )
    return final


@pytest.fixture(scope="session")
def raw_artefact(tmp_path_factory) -> Path:
    """Not a QCOW2 at all, though named like one: the import must refuse it."""
    path = tmp_path_factory.mktemp("raw") / "artefact.qcow2"
    path.write_bytes(b"\0" * 65536)
    return path


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKey]:
    """A throw-away ed25519 signing key, made once per session."""
    home = tmp_path_factory.mktemp("gnupg-signer")
    key = make_key(home, "Test Signer <t@example.org>")
    yield key
    subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)})


@pytest.fixture(scope="session")
def other_gpg_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgKey]:
    """A second key: a signature by it must fail against `gpg_key`."""
    home = tmp_path_factory.mktemp("gnupg-other")
    key = make_key(home, "Other Signer <o@example.org>")
    yield key
    subprocess.run(["gpgconf", "--kill", "all"], env={**os.environ, "GNUPGHOME": str(home)})


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[UpstreamServer]:
    """An HTTP server on 127.0.0.1 serving `tmp_path / "mirror"`."""
    root = tmp_path / "mirror"
    root.mkdir()
    server = UpstreamServer(root)
    yield server
    server.close()


@pytest.fixture
def upstream_tls(tmp_path: Path) -> Iterator[UpstreamServer]:
    """An HTTPS server with a self-signed certificate that clients do not trust."""
    root = tmp_path / "mirror-tls"
    root.mkdir()
    cert, key = make_self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = UpstreamServer(root, tls_context=context)
    server.cert = cert  # type: ignore[attr-defined]
    yield server
    server.close()


@pytest.fixture(scope="session")
def qcow2_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~2 MiB QCOW2 file (64 MiB virtual)."""
    return make_qcow2(tmp_path_factory.mktemp("images") / "base.qcow2")


@pytest.fixture(scope="session")
def raw_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 MiB raw disk image: qemu-img calls it 'raw'."""
    path = tmp_path_factory.mktemp("images") / "disk.raw"
    path.write_bytes(os.urandom(1024 * 1024))
    return path


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SMTPServer]:
    """A real SMTP server, and Django's SMTP backend pointed at it (never locmem)."""
    server = SMTPServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 10
    settings.NOTICE_RETRY_BASE_SECONDS = 0.01
    settings.NOTICE_RATE_PER_SECOND = 0
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def eol_server() -> Iterator[EolServer]:
    """A running EolServer on 127.0.0.1 with a free port, stopped after the test."""
    server = EolServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# Fixtures that give a test the database (directly or through another fixture).
_DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With TESTS_DATABASE_ONLY=1 (the PostgreSQL pass), keep only the tests that use the
    database: the others ran already on SQLite and would test the same code again."""
    if os.environ.get("TESTS_DATABASE_ONLY") != "1":
        return
    kept, dropped = [], []
    for item in items:
        uses_database = item.get_closest_marker("django_db") is not None or bool(
            _DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        )
        (kept if uses_database else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
