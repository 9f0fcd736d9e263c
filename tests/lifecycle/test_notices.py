"""Planning and sending deprecation notices, through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client

from catalog.choices import ImageState
from catalog.models import Image, ImageVersion, LocalImage, Zone
from lifecycle import emails, notices
from lifecycle.models import CORRECTION, Customer, Notice, NoticeState, Usage
from tests.catalog import factories

pytestmark = pytest.mark.django_db
DATE = dt.date(2027, 6, 30)


def _image(date: dt.date | None = DATE) -> Image:
    image = factories.os_image("ubuntu_focal")
    image.replacement = factories.os_image("ubuntu_noble")
    image.state = ImageState.DEPRECATION_SCHEDULED
    image.deprecation_date = date
    image.save()
    return image


def _customer(n: int, language: str = "", **extra: object) -> Customer:
    return Customer.objects.create(
        project_id=f"00000000-0000-0000-0000-{n:012d}",
        name=f"Customer {n}",
        email=f"c{n}@example.com",
        language=language,
        **extra,
    )


def _uses(customer: Customer, image: Image, zone: str = "fr-par-1", server: str = "") -> Usage:
    return Usage.objects.create(
        customer=customer,
        image=image,
        zone=zone,
        server_id=server or f"srv-{customer.pk}-{zone}-{Usage.objects.count()}",
        server_name=f"web-{zone}",
    )


def _at(day: dt.date, hour: int = 12) -> time_machine.travel:
    return time_machine.travel(dt.datetime(day.year, day.month, day.day, hour), tick=False)


def _day(offset: int) -> dt.date:
    return DATE - dt.timedelta(days=offset)


def test_it_plans_one_notice_per_offset_and_sends_each_on_its_day(smtp_server) -> None:
    image = _image()
    customer = _customer(1)
    _uses(customer, image, "fr-par-1")
    _uses(customer, image, "nl-ams-1")
    with _at(_day(120)):
        report = notices.plan_notices(image)
        assert report.created == 4
        assert notices.send_due().sent == 0
    for offset in (90, 30, 7, 0):
        with _at(_day(offset) - dt.timedelta(days=1)):
            assert notices.send_due().sent == 0
        with _at(_day(offset)):
            notices.plan_all()
            assert notices.send_due().sent == 1
    received = smtp_server.to("c1@example.com")
    assert len(received) == 4  # one email per notice, both zones in each
    text = received[0].part("text/plain")
    assert "fr-par-1" in text and "nl-ams-1" in text and "Ubuntu Noble" in text
    assert "30 June 2027" in text
    assert set(Notice.objects.values_list("state", flat=True)) == {NoticeState.SENT}


def test_a_late_deprecation_sends_only_the_most_recent_missed_notice_at_once(
    smtp_server,
) -> None:
    image = _image()
    _uses(_customer(1), image)
    with _at(_day(20)):  # 90 and 30 days before are past
        notices.plan_notices(image)
        kinds = sorted(Notice.objects.values_list("kind", flat=True))
        assert kinds == ["0", "30", "7"]
        assert notices.send_due().sent == 1
    assert "in 20 days" in smtp_server.received[0].part("text/plain")
    assert Notice.objects.get(kind="30").state == NoticeState.SENT
    with _at(_day(19)):
        notices.plan_all()
        assert notices.send_due().sent == 0


def test_a_moved_date_sends_a_correction_to_those_already_told(smtp_server) -> None:
    image = _image()
    told, untold = _customer(1), _customer(2)
    _uses(told, image)
    with _at(_day(90)):
        notices.plan_notices(image)
        notices.send_due()
    _uses(untold, image)
    new_date = DATE + dt.timedelta(days=60)
    with _at(_day(80)):
        image.deprecation_date = new_date
        image.save()
        notices.plan_all()
        report = notices.send_due()
    corrections = Notice.objects.filter(kind=CORRECTION)
    assert [n.customer for n in corrections] == [told]
    assert corrections.get().previous_date == DATE
    # The customer who was never told simply gets the new date's notices on their days.
    assert report.sent == 1
    correction = smtp_server.to("c1@example.com")[-1]
    assert correction.subject.startswith("Correction")
    assert "29 August 2027" in correction.part("text/plain")
    assert smtp_server.to("c2@example.com") == []
    assert Notice.objects.filter(customer=untold, state=NoticeState.PLANNED).count() == 4
    # The old date's planned notices are skipped, not sent.
    assert not Notice.objects.filter(deprecation_date=DATE, state=NoticeState.PLANNED).exists()


@pytest.mark.parametrize(
    ("language", "greeting", "subject_word"),
    [("fr", "Bonjour", "obsolète"), ("en", "Hello", "deprecated"), ("", "Hello", "deprecated")],
)
def test_emails_are_written_in_the_customer_language_or_english(
    smtp_server,
    language: str,
    greeting: str,
    subject_word: str,
) -> None:
    image = _image()
    _uses(_customer(1, language), image)
    with _at(_day(90)):
        notices.plan_notices(image)
        notices.send_due()
    (received,) = smtp_server.received
    assert received.part("text/plain").startswith(greeting)
    assert subject_word in received.subject
    assert greeting in received.part("text/html")
    assert "\n" not in received.subject


def test_the_unsubscribe_link_works_and_stops_further_notices(
    smtp_server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from catalog import middleware

    monkeypatch.setattr(
        middleware, "PUBLIC_PREFIXES", (*middleware.PUBLIC_PREFIXES, "/lifecycle/unsubscribe/")
    )
    image = _image()
    customer = _customer(1)
    _uses(customer, image)
    with _at(_day(90)):
        notices.plan_notices(image)
        notices.send_due()
    (received,) = smtp_server.received
    header = received.message["List-Unsubscribe"]
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = header.strip().strip("<>")
    assert url in received.part("text/plain")
    path = url.split("://", 1)[1].split("/", 1)[1]
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.get(f"/{path}").status_code == 200  # a confirmation page, no change
    customer.refresh_from_db()
    assert customer.unsubscribed_at is None
    response = anonymous.post(f"/{path}", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.unsubscribed_at is not None
    with _at(_day(30)):
        notices.plan_all()
        assert notices.send_due().sent == 0
    assert len(smtp_server.received) == 1
    assert anonymous.post("/lifecycle/unsubscribe/forged:token/").status_code == 400


def test_a_transient_refusal_is_retried_then_sent(smtp_server) -> None:
    image = _image()
    _uses(_customer(1), image)
    smtp_server.refuse("c1@example.com", 451, times=2)
    with _at(_day(90)):
        notices.plan_notices(image)
        report = notices.send_due()
    assert (report.sent, report.retried) == (1, 2)
    assert len(smtp_server.to("c1@example.com")) == 1
    assert Notice.objects.get(kind="90").state == NoticeState.SENT


def test_a_permanent_refusal_is_recorded_as_failed_for_that_recipient(smtp_server) -> None:
    image = _image()
    _uses(_customer(1), image)
    _uses(_customer(2), image)
    smtp_server.refuse("c1@example.com", 550)
    with _at(_day(90)):
        notices.plan_notices(image)
        report = notices.send_due()
    assert (report.sent, report.failed, report.retried) == (1, 1, 0)
    failed = Notice.objects.get(customer__email="c1@example.com", kind="90")
    assert failed.state == NoticeState.FAILED and "550" in failed.last_error
    assert smtp_server.handler.refused["c1@example.com"] == 1  # never retried


def test_transient_errors_are_retried_a_bounded_number_of_times(
    smtp_server,
    settings,
) -> None:
    settings.NOTICE_SMTP_RETRIES = 2
    image = _image()
    _uses(_customer(1), image)
    smtp_server.refuse("c1@example.com", 421)
    with _at(_day(90)):
        notices.plan_notices(image)
        notices.send_due()
    assert smtp_server.handler.refused["c1@example.com"] == 3
    assert Notice.objects.get(kind="90").state == NoticeState.FAILED


def _uncertain_notice() -> tuple[Notice, notices.SendReport]:
    """A 90-day notice claimed by a worker that died, found stale by the next send."""
    image = _image()
    _uses(_customer(1), image)
    with _at(_day(90)):
        notices.plan_notices(image)
        notice = Notice.objects.get(kind="90")
        assert notice.claim("dead-worker")
    with _at(_day(89)):
        report = notices.send_due(lease_seconds=600)
    notice.refresh_from_db()
    return notice, report


def test_a_stale_claim_becomes_uncertain_and_a_release_manager_decides(
    smtp_server,
    client: Client,
    release_manager,
    viewer,
) -> None:
    notice, report = _uncertain_notice()
    assert report.made_uncertain == 1 and notice.state == NoticeState.UNCERTAIN
    assert smtp_server.received == []
    client.force_login(viewer)
    decide = f"/lifecycle/notices/{notice.pk}/decide/"
    assert client.post(decide, {"action": "resend"}).status_code == 403
    client.force_login(release_manager)
    page = client.get("/lifecycle/notices/")
    assert f"notice-{notice.pk}" in page.content.decode()
    client.post(decide, {"action": "resend"})
    notice.refresh_from_db()
    assert notice.state == NoticeState.PLANNED
    with _at(_day(89)):
        assert notices.send_due().sent == 1
    from catalog.models import AuditEntry

    assert AuditEntry.objects.filter(action="notice.resend").exists()


def test_marking_an_uncertain_notice_sent_records_it_audited_and_sends_nothing(
    smtp_server,
    client: Client,
    release_manager,
) -> None:
    from catalog.models import AuditEntry

    notice, _ = _uncertain_notice()
    assert notice.state == NoticeState.UNCERTAIN
    claimed_at = notice.claimed_at

    client.force_login(release_manager)
    response = client.post(
        f"/lifecycle/notices/{notice.pk}/decide/",
        {"action": "mark_sent", "reason": "found in the mail server log"},
    )
    assert response.status_code == 302
    notice.refresh_from_db()
    assert notice.state == NoticeState.SENT and notice.sent_at == claimed_at
    entry = AuditEntry.objects.get(action="notice.mark_sent")
    assert entry.actor == release_manager and entry.message == "found in the mail server log"
    assert f"notice-{notice.pk}" not in client.get("/lifecycle/notices/").content.decode()
    with _at(_day(89)):
        assert notices.send_due().sent == 0
    assert smtp_server.received == []
    with _at(_day(30)):
        assert notices.send_due().sent == 1  # the next notice; the 90-day one never again
    assert len(smtp_server.received) == 1
    assert Notice.objects.get(kind="30").state == NoticeState.SENT


def test_failed_notices_are_listed_for_a_decision_with_the_recipient_and_the_reason(
    smtp_server,
    client: Client,
    release_manager,
) -> None:
    image = _image()
    _uses(_customer(1), image)
    _uses(_customer(2), image)
    smtp_server.refuse("c1@example.com", 550)
    with _at(_day(90)):
        notices.plan_notices(image)
        notices.send_due()
    failed = Notice.objects.get(customer__email="c1@example.com", kind="90")
    sent = Notice.objects.get(customer__email="c2@example.com", kind="90")
    client.force_login(release_manager)
    page = client.get("/lifecycle/notices/")
    body = page.content.decode()
    assert page.status_code == 200
    row = body[body.index(f'data-testid="notice-{failed.pk}"') :].split("</tr>", 1)[0]
    assert "Failed" in row and "c1@example.com" in row and "Customer 1" in row
    assert "550" in row and "No such user" in row
    assert f"notice-{sent.pk}" not in body


def test_a_catalogue_manager_can_neither_preview_nor_send_a_test_notice(
    smtp_server,
    client: Client,
    manager,
) -> None:
    image = _image()
    customer = _customer(1)
    _uses(customer, image)
    manager.email = "manon@factory.example"
    manager.save()
    client.force_login(manager)
    preview = client.get(f"/lifecycle/notices/image/{image.label}/preview/?customer={customer.pk}")
    assert preview.status_code == 403 and "c1@example.com" not in preview.content.decode()
    sent = client.post(f"/lifecycle/notices/image/{image.label}/test/", {"customer": customer.pk})
    assert sent.status_code == 403
    assert client.get("/lifecycle/notices/").status_code == 403
    assert smtp_server.received == []


def test_the_sender_reuses_one_smtp_connection_and_throttles(smtp_server, settings) -> None:
    image = _image()
    for n in range(5):
        _uses(_customer(n), image)
    with _at(_day(90)):
        notices.plan_notices(image)
    connections = []
    from django.core.mail.backends.smtp import EmailBackend

    original = EmailBackend.open

    def counting_open(self) -> bool | None:
        opened = original(self)
        if opened:
            connections.append(self)
        return opened

    EmailBackend.open = counting_open
    try:
        import time

        started = time.monotonic()
        with _at(_day(90)):
            report = notices.send_due(rate=20)
        elapsed = time.monotonic() - started
    finally:
        EmailBackend.open = original
    assert report.sent == 5 and len(connections) == 1
    assert elapsed >= 0.19  # 5 messages at 20 per second


def test_preview_and_send_a_test_to_me(smtp_server, client: Client, release_manager) -> None:
    image = _image()
    customer = _customer(1, "fr")
    _uses(customer, image)
    release_manager.email = "remi@factory.example"
    release_manager.save()
    client.force_login(release_manager)
    page = client.get(f"/lifecycle/notices/image/{image.label}/preview/?customer={customer.pk}")
    assert page.status_code == 200 and "Bonjour Customer 1" in page.content.decode()
    client.post(f"/lifecycle/notices/image/{image.label}/test/", {"customer": customer.pk})
    (received,) = smtp_server.received
    assert received.rcpt_tos == ["remi@factory.example"]
    assert received.subject.startswith("[TEST]")
    assert not Notice.objects.exists()  # a test is not a notice


def test_the_preview_frames_the_email_html_with_its_own_inline_styles(
    client: Client, release_manager, viewer
) -> None:
    image = _image()
    customer, stranger = _customer(1, "fr"), _customer(2)
    _uses(customer, image)
    client.force_login(release_manager)
    page = client.get(f"/lifecycle/notices/image/{image.label}/preview/?customer={customer.pk}")
    html_url = f"/lifecycle/notices/image/{image.label}/preview/html/?customer={customer.pk}"
    assert f'src="{html_url}"' in page.content.decode().replace("&amp;", "&")
    assert "srcdoc" not in page.content.decode()

    html = client.get(html_url)
    assert html.status_code == 200 and html["Content-Type"].startswith("text/html")
    assert "Bonjour Customer 1" in html.content.decode()
    assert 'style="font-family:sans-serif' in html.content.decode()
    # The email's inline styles apply there, and nothing runs; the site's pages keep theirs.
    policy = html["Content-Security-Policy"]
    assert "style-src 'unsafe-inline'" in policy and "default-src 'none'" in policy
    assert "sandbox" in policy and "frame-ancestors 'self'" in policy
    assert html["X-Frame-Options"] == "SAMEORIGIN"
    assert "unsafe-inline" not in page["Content-Security-Policy"]

    stranger_url = f"/lifecycle/notices/image/{image.label}/preview/html/?customer={stranger.pk}"
    assert client.get(stranger_url).status_code == 404
    no_customer = client.get(f"/lifecycle/notices/image/{image.label}/preview/html/")
    assert no_customer.status_code == 400 and b"Choose a customer." in no_customer.content
    client.force_login(viewer)
    assert client.get(html_url).status_code == 403


def test_the_image_panel_shows_notices_per_customer(
    client: Client, release_manager, viewer
) -> None:
    image = _image()
    _uses(_customer(1), image)
    with _at(_day(100)):
        notices.plan_notices(image)
    client.force_login(release_manager)
    body = client.get(f"/lifecycle/notices/image/{image.label}/panel/").content.decode()
    assert "Customer 1" in body and "4 planned" in body
    client.force_login(viewer)
    body = client.get(f"/lifecycle/notices/image/{image.label}/panel/").content.decode()
    assert "Customer 1" not in body


def test_unsubscribe_tokens_are_signed() -> None:
    customer = _customer(1)
    token = emails.unsubscribe_token(customer)
    assert emails.customer_id_from_token(token) == customer.pk
    assert emails.customer_id_from_token(token[:-1] + "x") is None


def test_usage_of_any_version_of_the_image_counts(settings) -> None:
    from lifecycle import usage

    image = _image()
    zone = Zone.objects.create(code="fr-par-1", enabled=True)
    old = ImageVersion.objects.create(image=image, name="2026-01-01")
    new = ImageVersion.objects.create(image=image, name="2026-04-01")
    LocalImage.objects.create(version=old, zone=zone, provider_image_id="img-old")
    LocalImage.objects.create(version=new, zone=zone, provider_image_id="img-new")
    assert usage._image_map() == {"img-old": (image.pk, old.pk), "img-new": (image.pk, new.pk)}


def test_the_audit_log_names_an_unsubscribed_customer_by_id_without_name_or_address(
    client: Client, viewer
) -> None:
    from catalog.models import AuditEntry

    customer = _customer(7)
    path = emails.unsubscribe_url(customer).split("://", 1)[1].split("/", 1)[1]
    assert Client().post(f"/{path}").status_code == 200

    entry = AuditEntry.objects.get(action="customer.unsubscribe")
    assert entry.target_repr == f"customer {customer.pk}"
    client.force_login(viewer)
    page = client.get("/audit/").content.decode()
    assert f"customer {customer.pk}" in page
    assert "c7@example.com" not in page and "Customer 7" not in page


def test_the_migration_rewrites_audit_entries_that_held_a_customer_name_and_address() -> None:
    import importlib

    from django.apps import apps

    from catalog.models import AuditEntry

    migration = importlib.import_module("lifecycle.migrations.0004_audit_names_customers_by_id")
    customer = _customer(7)
    other = _customer(8)
    # As the unsubscribe view wrote them before: the target was str(customer).
    old = AuditEntry.objects.create(
        action="customer.unsubscribe",
        target_type="lifecycle.Customer",
        target_id=str(customer.pk),
        target_repr="Customer 7 <c7@example.com>",
        message="unsubscribed by email link",
    )
    mention = AuditEntry.objects.create(
        action="notice.resend", message="asked by Customer 8 <c8@example.com> on the phone"
    )
    unrelated = AuditEntry.objects.create(action="catalog.edit", message="ops@factory.example")

    migration.name_customers_by_id(apps, None)

    old.refresh_from_db()
    mention.refresh_from_db()
    unrelated.refresh_from_db()
    assert old.target_repr == f"customer {customer.pk}"
    assert mention.message == f"asked by customer {other.pk} on the phone"
    assert unrelated.message == "ops@factory.example"  # not a customer's address


def test_a_decision_goes_back_to_the_page_of_this_site_it_came_from(
    client: Client, release_manager
) -> None:
    notice, _ = _uncertain_notice()
    client.force_login(release_manager)
    back = f"/lifecycle/notices/image/{notice.image.label}/panel/"
    response = client.post(
        f"/lifecycle/notices/{notice.pk}/decide/", {"action": "mark_sent", "next": back}
    )
    assert response.status_code == 302 and response["Location"] == back
    notice.refresh_from_db()
    assert notice.state == NoticeState.SENT
