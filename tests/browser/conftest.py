"""Fixtures of the browser tests: one Chromium per session, a fresh context per test, users
of every role, a few catalogue rows and a `login` helper.

The server is pytest-django's `live_server` (a real HTTP server thread sharing the test
database), so every test that uses it needs `django_db(transaction=True)`. On SQLite that
database is a file here, not memory: the server thread and the test write at once, and an
in-memory database shared between threads answers "database table is locked" at once instead
of waiting (its busy timeout does not apply), which a loaded machine turned into failures.
Transactional tests flush the database after each test, groups included: the user fixtures
re-create the role groups first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from catalog import roles
from catalog.choices import ImageKind, StepType
from catalog.models import Category, Image, RecipeStep, UpstreamLifecycle, Zone

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
# The machine may be busy with other test runs: wait as long for an expectation as for an action.
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """On SQLite, the test database of a browser session is a file (WAL, busy timeout)."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        folder = tmp_path_factory.mktemp("browser-database")
        database.setdefault("TEST", {})["NAME"] = str(folder / "test.sqlite3")


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    # Playwright's sync API keeps an event loop running in the main thread; Django would
    # refuse the ORM calls the tests make there to create rows and check what was saved.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as p:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def js_errors(page: Page) -> list[str]:
    """The script errors and failed loads of `page` (htmx reports a swap target it cannot
    find as a console error); the favicon the app does not serve is left out."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        where = message.location.get("url", "")
        if message.type == "error" and not where.endswith("/favicon.ico"):
            errors.append(f"{message.text} ({where})")

    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", on_console)
    return errors


def login(page: Page, live_server: Any, user: User) -> None:
    """Sign `user` in through the login form and wait for the home page."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("User name").fill(user.get_username())
    page.get_by_label("Password").fill("pw-" + user.get_username())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")


def csrf_token(page: Page) -> str:
    """The csrftoken cookie the browser holds, as htmx would send it."""
    for cookie in page.context.cookies():
        if cookie["name"] == "csrftoken":
            return cookie["value"]
    raise AssertionError("the browser holds no csrftoken cookie")


# --- users of every role --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """PBKDF2 costs most of a second per hash on a busy machine; these tests are about pages."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def role_groups(transactional_db: None) -> None:
    """The role groups, which the flush after each transactional test removes."""
    roles.sync_roles()


def _user(username: str, role: str | None, **extra: object) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username, **extra)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(role_groups: None) -> User:
    return _user("viola", roles.VIEWER)


@pytest.fixture
def manager(role_groups: None) -> User:
    return _user("manon", roles.CATALOGUE_MANAGER)


@pytest.fixture
def release_manager(role_groups: None) -> User:
    return _user("remi", roles.RELEASE_MANAGER)


@pytest.fixture
def admin_user(role_groups: None) -> User:
    return _user("ada", None, is_superuser=True, is_staff=True)


# --- catalogue rows -----------------------------------------------------------------------------


def make_image(
    label: str,
    name: str,
    *,
    eol_in_days: int | None = None,
    base: Image | None = None,
    codename: str = "",
) -> Image:
    """An OS image (with an upstream EOL `eol_in_days` from today) or, with `base`, an
    InstantApp built on it."""
    kind = ImageKind.INSTANTAPP if base else ImageKind.OS
    category, _ = Category.objects.get_or_create(name="InstantApps" if base else "Distributions")
    image = Image.objects.create(
        kind=kind,
        label=label,
        name=name,
        category=category,
        architectures=["x86_64"],
        distribution="" if base else label.split("_")[0],
        codename=codename,
        base_image=base,
    )
    if eol_in_days is not None:
        UpstreamLifecycle.objects.create(
            image=image,
            security_support_end=timezone.localdate() + dt.timedelta(days=eol_in_days),
        )
    return image


@pytest.fixture
def catalogue(transactional_db: None) -> dict[str, Image]:
    """Noble (supported for years), Focal (past its EOL), Bookworm (EOL in 30 days) and
    WordPress on Noble; Noble has a two-step recipe."""
    noble = make_image(
        "ubuntu_noble", "Ubuntu 24.04 Noble Numbat", eol_in_days=1500, codename="noble"
    )
    focal = make_image(
        "ubuntu_focal", "Ubuntu 20.04 Focal Fossa", eol_in_days=-200, codename="focal"
    )
    bookworm = make_image(
        "debian_bookworm", "Debian 12 Bookworm", eol_in_days=30, codename="bookworm"
    )
    wordpress = make_image("wordpress", "WordPress", base=noble)
    RecipeStep.objects.create(image=noble, position=1, type=StepType.UPDATE_PACKAGES)
    RecipeStep.objects.create(
        image=noble, position=2, type=StepType.INSTALL_PACKAGES, params={"packages": ["curl"]}
    )
    return {"noble": noble, "focal": focal, "bookworm": bookworm, "wordpress": wordpress}


@pytest.fixture
def zones(transactional_db: None) -> list[Zone]:
    return [
        Zone.objects.create(code="fr-par-1", enabled=True),
        Zone.objects.create(code="nl-ams-1", enabled=False),
    ]
