"""Bad inputs on the dashboard's forms: each gets a clear error (400 or 422), never a 500, and
nothing is written (no row in the factory's tables or django-q2's queue) or sent.

One table: the case, who posts it, the request, and the status and words expected back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from catalog.models import Image
from lifecycle.models import Customer, Notice, NoticeState, Usage
from tests.catalog import factories

pytestmark = pytest.mark.django_db

WATCHED_APPS = ("catalog", "builds", "lifecycle", "django_q")
HUGE_ID = "99999999999999999999999"
P1 = "11111111-1111-1111-1111-111111111111"


@dataclass(frozen=True)
class World:
    """What the rows of the table post against."""

    image: Image
    customer: Customer
    notice: Notice


def _world() -> World:
    image = factories.os_image("debian_bookworm")
    customer = Customer.objects.create(project_id=P1, name="Alpha", email="alpha@example.com")
    Usage.objects.create(customer=customer, image=image, zone="fr-par-1", server_id="srv-1")
    notice = Notice.objects.create(
        customer=customer,
        image=image,
        kind="90",
        deprecation_date=dt.date(2027, 6, 30),
        due_at=timezone.now(),
        state=NoticeState.UNCERTAIN,
    )
    return World(image, customer, notice)


def _csv(text: str) -> dict[str, Any]:
    return {"file": SimpleUploadedFile("customers.csv", text.encode(), "text/csv")}


@dataclass(frozen=True)
class Case:
    """One bad input: who sends it, where, and what must come back."""

    user: str
    method: str
    url: Callable[[World], str]
    data: Callable[[World], dict[str, Any]]
    status: int
    says: str
    extra: dict[str, Any] = field(default_factory=dict)


def _advisory(fixed_version: str, **more: str) -> Case:
    return Case(
        "manager",
        "post",
        lambda w: "/lifecycle/triggers/rebuild/",
        lambda w: {
            "kind": "security",
            "advisory_id": "DSA-1",
            "packages": "libc6",
            "fixed_version": fixed_version,
            **more,
        },
        400,
        "Not a package version",
    )


def _confirm(image_ids: list[str], says: str) -> Case:
    return Case(
        "manager",
        "post",
        lambda w: "/lifecycle/triggers/rebuild/",
        lambda w: {
            "kind": "ecosystem",
            "package_version": "2.4.1",
            "confirm": "yes",
            "image": image_ids,
        },
        400,
        says,
    )


def _send_test(customer: str, says: str = "Choose a customer from the list.") -> Case:
    return Case(
        "release_manager",
        "post",
        lambda w: f"/lifecycle/notices/image/{w.image.label}/test/",
        lambda w: {"customer": customer},
        400,
        says,
    )


def _preview(customer: str) -> Case:
    return Case(
        "release_manager",
        "get",
        lambda w: f"/lifecycle/notices/image/{w.image.label}/preview/",
        lambda w: {"customer": customer},
        400,
        "Choose a customer from the list.",
    )


def _janitor(hours: str, says: str) -> Case:
    return Case(
        "admin_user",
        "post",
        lambda w: "/builds/janitor/run/",
        lambda w: {"older_than_hours": hours},
        400,
        says,
    )


def _step(step_type: str, says: str, **params: str) -> Case:
    return Case(
        "manager",
        "post",
        lambda w: f"/images/{w.image.label}/steps/add/",
        lambda w: {"type": step_type, "enabled": "on", **{f"p_{k}": v for k, v in params.items()}},
        422,
        says,
    )


def _decide(says: str, **data: str) -> Case:
    return Case(
        "release_manager",
        "post",
        lambda w: f"/lifecycle/notices/{w.notice.pk}/decide/",
        lambda w: data,
        400,
        says,
    )


def _import(text: str, says: str) -> Case:
    return Case(
        "release_manager",
        "post",
        lambda w: "/lifecycle/customers/import/",
        lambda w: _csv(text),
        400,
        says,
    )


NOT_A_NUMBER = "The age threshold must be a number of hours."
TOO_LONG = "The age threshold is at most 87600 hours (ten years)."
OFF_SITE = "The page to go back to must be a page of this site."
HEADER = "project_id,name,email\n"

CASES: dict[str, Case] = {
    # Advisory fixed version: str.isdigit() accepts "²", int() does not.
    "advisory fixed version with a superscript epoch": _advisory("²:1.0"),
    "advisory fixed version with an Arabic-Indic epoch": _advisory("\u0661:1.0"),
    "advisory fixed version with spaces": _advisory("1.0 2.0"),
    "advisory fixed version starting with a colon": _advisory(":1.0"),
    "advisory fixed version, at the confirmation": _advisory("²:1.0", confirm="yes", image="1"),
    # Bulk-rebuild confirmation: image ids come from the browser.
    "bulk rebuild with image=abc": _confirm(["abc"], "“abc” is not an image id."),
    "bulk rebuild with an empty image id": _confirm([""], "“” is not an image id."),
    "bulk rebuild with a negative image id": _confirm(["-1"], "“-1” is not an image id."),
    "bulk rebuild with a huge image id": _confirm([HUGE_ID], f"“{HUGE_ID}” is not an image id."),
    "bulk rebuild with an image that does not exist": _confirm(
        ["424242"], "Image 424242 does not exist."
    ),
    "bulk rebuild with a unicode digit id": _confirm(["²"], "“²” is not an image id."),
    # Notices: "send a test" and the preview name a customer by id.
    "send a test with customer=abc": _send_test("abc"),
    "send a test with no customer": _send_test("", "Choose a customer."),
    "send a test with a negative customer id": _send_test("-1"),
    "send a test with a huge customer id": _send_test(HUGE_ID),
    "send a test with a unicode digit customer id": _send_test("²"),
    "preview with a unicode digit customer id": _preview("²"),
    "preview with a huge customer id": _preview(HUGE_ID),
    "preview with customer=abc": _preview("abc"),
    # Janitor hours: finite and bounded, or the task crashed after the page said "started".
    "janitor hours nan": _janitor("nan", NOT_A_NUMBER),
    "janitor hours inf": _janitor("inf", NOT_A_NUMBER),
    "janitor hours -inf": _janitor("-inf", NOT_A_NUMBER),
    "janitor hours 1e308": _janitor("1e308", TOO_LONG),
    "janitor hours negative": _janitor("-1", "The age threshold cannot be negative."),
    "janitor hours abc": _janitor("abc", NOT_A_NUMBER),
    # Run-command step timeout: at most 24 h.
    "run-command timeout of a day and a second": _step(
        "run_command", "At most 86400 seconds (24 h).", command="true", timeout="86401"
    ),
    "run-command timeout of 10**30 s": _step(
        "run_command", "At most 86400 seconds (24 h).", command="true", timeout="1" + "0" * 30
    ),
    "run-command timeout of zero": _step(
        "run_command", "Must be above zero.", command="true", timeout="0"
    ),
    # Notice decision: an open redirect, or no decision.
    "notice decision with next on another site": _decide(
        OFF_SITE, action="mark_sent", next="https://evil.example/"
    ),
    "notice decision with a scheme-relative next": _decide(
        OFF_SITE, action="mark_sent", next="//evil.example/"
    ),
    "notice decision with a backslash next": _decide(
        OFF_SITE, action="mark_sent", next="/\\evil.example/"
    ),
    "notice decision with a javascript: next": _decide(
        OFF_SITE, action="mark_sent", next="javascript:alert(1)"
    ),
    "notice decision without an action": _decide("Choose a decision."),
    "notice decision with an unknown action": _decide("Unknown decision.", action="delete"),
    # Customers CSV: NUL bytes (PostgreSQL refuses them), a field csv cannot read.
    "customers CSV with a NUL in a name": _import(
        f"{HEADER}{P1},Al\x00pha,alpha2@example.com\n", "Line 2: name holds a NUL character"
    ),
    "customers CSV with a NUL in an address": _import(
        f"{HEADER}{P1},Alpha,alpha\x00@example.com\n", "Line 2: email holds a NUL character"
    ),
    "customers CSV with a field over the csv size limit": _import(
        f"{HEADER}{P1},{'A' * 200_000},alpha@example.com\n", "not readable as CSV"
    ),
    # Recipe editor: the build's own checks run when the step is saved.
    "upload source with ../": _step(
        "upload_file", "outside the files folder", source="../secret.txt", destination="/etc/x"
    ),
    "upload source as an absolute path": _step(
        "upload_file", "outside the files folder", source="/etc/shadow", destination="/etc/x"
    ),
    "ecosystem file with ../": _step(
        "ecosystem_package", "outside the files folder", package="eco", file="../../eco.deb"
    ),
    "download from the metadata address": _step(
        "download_file",
        "is the metadata service or link-local",
        url="http://169.254.42.42/conf",
        sha256="0" * 64,
        destination="/opt/x",
    ),
    "download from a link-local address": _step(
        "download_file",
        "is the metadata service or link-local",
        url="http://169.254.169.254/latest/meta-data/",
        sha256="0" * 64,
        destination="/opt/x",
    ),
    "download from a host outside the allowed hosts": _step(
        "download_file",
        "not in the allowed download hosts",
        url="https://evil.example/x.deb",
        sha256="0" * 64,
        destination="/opt/x",
    ),
    "download URL with an unbalanced bracket": _step(
        "download_file",
        "Give an http:// or https:// URL.",
        url="http://[cloud.debian.org/x",
        sha256="0" * 64,
        destination="/opt/x",
    ),
    "download URL with a port out of range": _step(
        "download_file",
        "Give an http:// or https:// URL.",
        url="https://cloud.debian.org:99999/x",
        sha256="0" * 64,
        destination="/opt/x",
    ),
}


def _database() -> dict[str, list[tuple]]:
    """Every row of the factory's tables and django-q2's, by model."""
    state = {}
    for model in apps.get_models():
        meta = model._meta
        if meta.app_label in WATCHED_APPS and meta.managed and not meta.proxy:
            state[meta.label] = list(model.objects.order_by("pk").values_list())
    return state


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_gets_a_clear_error_and_writes_nothing(
    request: pytest.FixtureRequest,
    smtp_server,
    settings,
    django_capture_on_commit_callbacks,
    tmp_path,
    name: str,
) -> None:
    case = CASES[name]
    settings.FILES_DIR = tmp_path / "files"
    settings.FILES_DIR.mkdir()
    (tmp_path / "secret.txt").write_text("not for images")
    world = _world()
    user = request.getfixturevalue(case.user)
    user.email = "me@factory.example"
    user.save()
    client = Client(raise_request_exception=True)
    client.force_login(user)
    before = _database()

    with django_capture_on_commit_callbacks(execute=True):
        send = client.get if case.method == "get" else client.post
        response = send(case.url(world), case.data(world))

    assert response.status_code == case.status, response.content.decode()[:2000]
    assert case.says in response.content.decode()
    assert _database() == before
    assert smtp_server.received == []
