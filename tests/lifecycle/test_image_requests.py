"""Image requests: the public form, its signed links and rate limit, merging, triage, emails."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.test import Client, RequestFactory, TestCase
from django.urls import reverse

from config.client_ip import client_ip
from lifecycle import image_requests, tasks
from lifecycle.models import (
    ImageRequest,
    Requester,
    RequestStatus,
    RequestStatusChange,
    RequestSubmission,
)
from tests.lifecycle import post_status, run_queued

pytestmark = pytest.mark.django_db
NEW = "/lifecycle/requests/public/new/"


def _ask(
    client: Client,
    email: str,
    name: str = "Ubuntu 26.04 LTS",
    ip: str = "192.0.2.1",
    **headers: str,
):
    """Post the public form; then a worker sends the confirmation the view queued."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(
            NEW,
            {"kind": "os", "name": name, "description": f"{email} needs it", "email": email},
            REMOTE_ADDR=ip,
            **headers,
        )
    run_queued(image_requests.CONFIRMATION_TASK)
    return response


def _link(smtp_server, email: str) -> str:
    text = smtp_server.to(email)[-1].part("text/plain")
    return re.search(r"https?://\S+/lifecycle/requests/public/confirm/\S+/", text).group(0)


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def _confirm(client: Client, smtp_server, email: str) -> None:
    response = client.post(_path(_link(smtp_server, email)))
    assert b'data-testid="confirmed"' in response.content


def test_the_form_works_without_login_and_checks_csrf(smtp_server) -> None:
    anonymous = Client(enforce_csrf_checks=True)
    page = anonymous.get(NEW)
    assert page.status_code == 200 and b"csrfmiddlewaretoken" in page.content
    refused = anonymous.post(NEW, {"kind": "os", "name": "Alpine", "email": "a@example.com"})
    assert refused.status_code == 403
    token = page.cookies["csrftoken"].value
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = anonymous.post(
            NEW,
            {
                "kind": "os",
                "name": "Alpine 3.22",
                "email": "A@Example.com",
                "csrfmiddlewaretoken": token,
            },
        )
    run_queued(image_requests.CONFIRMATION_TASK)
    assert response.status_code == 302
    assert response["Location"].endswith("/public/thanks/?language=en")
    assert anonymous.get(response["Location"]).status_code == 200
    requester = Requester.objects.get()
    assert requester.email == "a@example.com" and requester.confirmed_at is None
    assert len(smtp_server.to("a@example.com")) == 1
    assert "Alpine 3.22" in smtp_server.received[0].part("text/plain")


def test_a_request_counts_only_after_its_confirmation_link_is_followed(
    client: Client,
    smtp_server,
    manager,
) -> None:
    _ask(client, "ana@example.com")
    request = ImageRequest.objects.get()
    assert not ImageRequest.objects.confirmed().exists()
    path = _path(_link(smtp_server, "ana@example.com"))
    page = Client().get(path)  # mail scanners fetch links: GET only asks
    assert page.status_code == 200 and b"<form" in page.content
    assert Requester.objects.get().confirmed_at is None
    _confirm(Client(), smtp_server, "ana@example.com")
    assert ImageRequest.objects.confirmed().get().confirmed_count == 1
    client.force_login(manager)
    listing = client.get(reverse("lifecycle:requests"))
    assert request.name.encode() in listing.content


def test_an_expired_or_altered_link_is_refused(client: Client, smtp_server, settings) -> None:
    settings.IMAGE_REQUEST_CONFIRM_MAX_AGE_HOURS = 48
    with time_machine.travel(dt.datetime(2027, 1, 1, 9), tick=False):
        _ask(client, "ana@example.com")
    path = _path(_link(smtp_server, "ana@example.com"))
    with time_machine.travel(dt.datetime(2027, 1, 3, 10), tick=False):
        expired = Client().post(path)
    assert expired.status_code == 400 and b"confirm-invalid" in expired.content
    altered = Client().post(path[:-3] + "xx/")
    assert altered.status_code == 400
    assert Requester.objects.get().confirmed_at is None
    with time_machine.travel(dt.datetime(2027, 1, 2, 9), tick=False):
        assert Client().post(path).status_code == 200
    assert Requester.objects.get().confirmed_at is not None


def test_too_many_submissions_from_one_ip_or_one_email_get_a_429(
    client: Client,
    smtp_server,
    settings,
) -> None:
    settings.IMAGE_REQUEST_RATE_LIMIT = 5
    with time_machine.travel(dt.datetime(2027, 1, 1, 9), tick=True):
        for n in range(5):
            assert _ask(client, f"p{n}@example.com", name=f"Image {n}").status_code == 302
        refused = _ask(client, "p9@example.com", name="Image 9")
        assert refused.status_code == 429 and b"rate-limited" in refused.content
        # The same address from elsewhere is limited too.
        for n in range(5):
            _ask(client, "same@example.com", name=f"App {n}", ip=f"198.51.100.{n}")
        assert _ask(client, "same@example.com", ip="203.0.113.9").status_code == 429
    assert not ImageRequest.objects.filter(name__in=["Image 9"]).exists()
    with time_machine.travel(dt.datetime(2027, 1, 1, 10, 30), tick=True):
        assert _ask(client, "p9@example.com", name="Image 9").status_code == 302


def test_requests_for_the_same_thing_merge_and_count_confirmed_requesters(
    client: Client,
    smtp_server,
    viewer,
) -> None:
    for n, name in enumerate(["Ubuntu 26.04 LTS", "ubuntu-26.04-lts", "  UBUNTU 26.04   lts "]):
        _ask(client, f"u{n}@example.com", name=name, ip=f"192.0.2.{n}")
    _ask(client, "u0@example.com", name="Ubuntu 26.04 LTS", ip="192.0.2.9")  # asks again
    _ask(client, "w@example.com", name="WordPress", ip="192.0.2.20")
    assert ImageRequest.objects.count() == 2
    ubuntu = ImageRequest.objects.get(normalized_name="ubuntu 26 04 lts")
    assert ubuntu.name == "Ubuntu 26.04 LTS" and ubuntu.requesters.count() == 3
    for email in ("u0@example.com", "u1@example.com", "w@example.com"):
        _confirm(Client(), smtp_server, email)
    assert ImageRequest.objects.with_counts().get(pk=ubuntu.pk).confirmed_count == 2
    client.force_login(viewer)
    page = client.get(reverse("lifecycle:requests") + "?sort=count")
    text = page.content.decode()
    assert text.index("Ubuntu 26.04 LTS") < text.index("WordPress")
    counts = re.findall(r'data-testid="count">(\d+)<', text)
    assert counts == ["2", "1"]


def test_a_viewer_cannot_change_a_status(client: Client, viewer) -> None:
    request = ImageRequest.objects.create(kind="os", name="Alpine")
    client.force_login(viewer)
    assert client.get(request.get_absolute_url()).status_code == 200
    response = client.post(
        reverse("lifecycle:request_status", args=[request.pk]), {"status": "planned"}
    )
    assert response.status_code == 403
    assert ImageRequest.objects.get().status == RequestStatus.NEW
    assert Client().get(reverse("lifecycle:requests")).status_code == 302  # login needed


def test_every_confirmed_requester_gets_one_email_per_status_change(
    client: Client,
    smtp_server,
    manager,
) -> None:
    for n in range(3):
        _ask(Client(), f"r{n}@example.com", name="Rocky Linux 10", ip=f"192.0.2.{n}")
    _confirm(Client(), smtp_server, "r0@example.com")
    _confirm(Client(), smtp_server, "r1@example.com")  # r2 never confirms
    request = ImageRequest.objects.get()
    before = len(smtp_server.received)
    change = post_status(client, manager, request, "planned", "Next month, x86_64 first.")
    assert change.previous_status == "new" and change.status == "planned"
    # The view enqueued the task; the worker runs it (twice here: a replay sends nothing).
    assert tasks.send_request_status_emails_task(change.pk) == "sent 2, failed 0, already told 0"
    tasks.send_request_status_emails_task(change.pk)
    news = smtp_server.received[before:]
    assert sorted(r.rcpt_tos[0] for r in news) == ["r0@example.com", "r1@example.com"]
    message = news[0]
    assert message.subject == f"Your image request #{request.pk}: planned"
    assert "Rocky Linux 10, is now planned" in message.part("text/plain")
    assert "Next month, x86_64 first." in message.part("text/plain")
    assert str(message.message["List-Unsubscribe"]).strip().startswith("<http")
    # Saving the same status and note again is not a change: no email.
    client.post(
        reverse("lifecycle:request_status", args=[request.pk]),
        {"status": "planned", "note": "Next month, x86_64 first."},
    )
    assert RequestStatusChange.objects.count() == 1
    # A requester who stopped the news is not told about the next change.
    stop = image_requests.unsubscribe_url(Requester.objects.get(email="r1@example.com"))
    assert Client().post(_path(stop)).status_code == 200
    change = ImageRequest.objects.get().change_status("released", "Out now.", manager)
    image_requests.send_status_emails(change)
    released = [r for r in smtp_server.received if "released" in r.subject]
    assert [r.rcpt_tos for r in released] == [["r0@example.com"]]


def test_the_form_answers_before_any_email_is_sent_and_a_worker_sends_the_confirmation(
    smtp_server,
) -> None:
    # A slow or dead mail server held the web thread of this public form for 7 to 127 s.
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = Client().post(
            NEW, {"kind": "os", "name": "Alpine 3.22", "email": "a@example.com"}
        )
    assert response.status_code == 302
    assert smtp_server.received == []  # nothing was sent from the web request
    requester = Requester.objects.get()
    assert run_queued(image_requests.CONFIRMATION_TASK) == [
        f"confirmation of requester {requester.pk}: sent"
    ]
    assert len(smtp_server.to("a@example.com")) == 1
    # A replay after the requester confirmed sends nothing more.
    requester.confirm()
    assert tasks.send_request_confirmation_task(requester.pk) == (
        f"requester {requester.pk} is already confirmed"
    )
    assert len(smtp_server.received) == 1


def test_a_dead_mail_server_fails_the_confirmation_task_not_the_form(settings) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings.EMAIL_PORT = sock.getsockname()[1]  # nothing listens there once closed
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.NOTICE_SMTP_RETRIES = 1
    settings.NOTICE_RETRY_BASE_SECONDS = 0.01
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = Client().post(NEW, {"kind": "os", "name": "Alpine", "email": "a@example.com"})
    assert response.status_code == 302
    [outcome] = run_queued(image_requests.CONFIRMATION_TASK)
    assert "transient, gave up after 2 attempts" in outcome


def test_behind_a_trusted_proxy_the_rate_limit_counts_each_client_not_the_proxy(
    smtp_server,
    settings,
) -> None:
    settings.IMAGE_REQUEST_RATE_LIMIT = 5
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.1"
    for n in range(6):  # six people behind the same proxy
        forwarded = {"HTTP_X_FORWARDED_FOR": f"198.51.100.{n}"}
        response = _ask(Client(), f"p{n}@example.com", f"Image {n}", proxy, **forwarded)
        assert response.status_code == 302
    # One client writing its own X-Forwarded-For: only what our proxy appended counts.
    for n in range(5):
        forged = {"HTTP_X_FORWARDED_FOR": f"203.0.113.{n}, 192.0.2.50"}
        assert _ask(Client(), f"q{n}@example.com", f"App {n}", proxy, **forged).status_code == 302
    forged = {"HTTP_X_FORWARDED_FOR": "203.0.113.99, 192.0.2.50"}
    assert _ask(Client(), "q9@example.com", "App 9", proxy, **forged).status_code == 429
    ips = set(RequestSubmission.objects.values_list("ip", flat=True))
    assert ips == {f"198.51.100.{n}" for n in range(6)} | {"192.0.2.50"}


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "expected"),
    [
        (0, "203.0.113.5", "198.51.100.1", "203.0.113.5"),  # no proxy: the header is the client's
        (1, "10.0.0.1", "198.51.100.1", "198.51.100.1"),
        (1, "10.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),
        (2, "10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.1", "198.51.100.1"),
        (1, "10.0.0.1", " 2001:DB8::1 ", "2001:db8::1"),
        (2, "10.0.0.2", "198.51.100.1", "10.0.0.2"),  # not through every proxy
        (1, "10.0.0.1", None, "10.0.0.1"),
        (1, "10.0.0.1", "", "10.0.0.1"),
        (1, "10.0.0.1", "198.51.100.1,", "10.0.0.1"),
        (1, "10.0.0.1", "unknown", "10.0.0.1"),
        (1, "10.0.0.1", "198.51.100.1:4711", "10.0.0.1"),
        (1, "10.0.0.1", "٣.٣.٣.٣", "10.0.0.1"),
        (1, "", "not an address", None),
    ],
)
def test_the_client_address_comes_from_the_configured_proxy_depth_or_falls_back_to_the_peer(
    settings, proxies: int, remote: str, forwarded: str | None, expected: str | None
) -> None:
    settings.TRUSTED_PROXY_COUNT = proxies
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    request = RequestFactory().post(NEW, REMOTE_ADDR=remote, **headers)
    assert client_ip(request) == expected


def test_no_text_the_requester_typed_goes_into_an_email_subject(
    client: Client,
    smtp_server,
    manager,
) -> None:
    name = "FREE CRYPTO at spam.example"
    _ask(Client(), "r@example.com", name=name)
    _confirm(Client(), smtp_server, "r@example.com")
    request = ImageRequest.objects.get()
    change = post_status(client, manager, request, "planned", "")
    tasks.send_request_status_emails_task(change.pk)
    confirmation, status = smtp_server.to("r@example.com")
    assert confirmation.subject == "Confirm your image request"
    assert status.subject == f"Your image request #{request.pk}: planned"
    for message in (confirmation, status):
        assert "spam.example" not in message.subject
        assert name in message.part("text/plain")  # the body still says what was asked for
