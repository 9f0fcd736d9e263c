"""Image requests in English and French: the form's language, the confirmation and status emails."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, TestCase

from lifecycle import image_requests, tasks
from lifecycle.models import (
    ImageRequest,
    Requester,
    RequestStatus,
    RequestSubmission,
)
from tests.lifecycle import post_status, run_queued

NEW = "/lifecycle/requests/public/new/"
FRENCH_BROWSER = "fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7"


def _ask(
    client: Client,
    email: str,
    *,
    language: str | None = None,
    name: str = "Ubuntu 26.04 LTS",
    kind: str = "os",
    ip: str = "192.0.2.1",
    **headers: str,
):
    """Post the public form; then a worker sends the confirmation the view queued."""
    data = {"kind": kind, "name": name, "description": "", "email": email}
    if language is not None:
        data["language"] = language
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(NEW, data, REMOTE_ADDR=ip, **headers)
    run_queued(image_requests.CONFIRMATION_TASK)
    return response


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def _confirm(smtp_server, email: str) -> None:
    text = smtp_server.to(email)[-1].part("text/plain")
    link = re.search(r"https?://\S+/lifecycle/requests/public/confirm/\S+/", text).group(0)
    assert Client().post(_path(link)).status_code == 200


def _checked(page: bytes) -> str:
    """The language whose radio button the form shows checked."""
    found = re.search(rb'<input type="radio" name="language" value="(\w+)"[^>]*checked', page)
    assert found, page
    return found.group(1).decode()


@pytest.mark.django_db
def test_a_french_requester_gets_the_confirmation_and_the_page_in_french(
    client: Client,
    smtp_server,
) -> None:
    response = _ask(client, "lea@example.fr", language="fr")
    assert response.status_code == 302
    assert Requester.objects.get().language == "fr"
    [message] = smtp_server.to("lea@example.fr")
    assert message.subject == "Confirmez votre demande d'image"
    text = message.part("text/plain")
    assert text.startswith("Bonjour,")
    assert "une nouvelle image de système d'exploitation : Ubuntu 26.04 LTS." in text
    assert "suivez ce lien dans les 48 heures" in text
    assert "Hello" not in text and "confirm it" not in text
    html = message.part("text/html")
    assert '<html lang="fr">' in html and "Confirmez la demande</a> dans les 48 heures" in html
    thanks = client.get(response["Location"])
    assert "Consultez votre boîte de réception" in thanks.content.decode()


@pytest.mark.django_db
def test_a_requester_who_chooses_no_language_gets_english(
    client: Client,
    smtp_server,
) -> None:
    response = _ask(client, "sam@example.com", name="WordPress & PHP-FPM", kind="instantapp")
    assert response.status_code == 302
    assert Requester.objects.get().language == "en"
    [message] = smtp_server.to("sam@example.com")
    assert message.subject == "Confirm your InstantApp request"
    # The text part is plain text: "&" stays "&" (not "&amp;").
    assert message.part("text/plain").startswith("Hello,")
    assert "asked for a new InstantApp: WordPress & PHP-FPM." in message.part("text/plain")
    assert '<html lang="en">' in message.part("text/html")
    assert "Check your inbox" in client.get(response["Location"]).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [
        (FRENCH_BROWSER, "fr"),
        ("fr-CA", "fr"),
        ("de-DE,de;q=0.9,fr;q=0.5,en;q=0.3", "fr"),  # of what we write, French comes first
        ("en-GB,en;q=0.9,fr;q=0.8", "en"),
        ("fr;q=0.5,en", "en"),
        ("de-DE", "en"),
        ("fr;q=nonsense", "en"),
        ("", "en"),
    ],
)
def test_the_form_presets_the_language_the_browser_prefers(
    client: Client, accept_language: str, expected: str
) -> None:
    page = client.get(NEW, HTTP_ACCEPT_LANGUAGE=accept_language)
    assert page.status_code == 200
    assert "Langue de nos e-mails" in page.content.decode()
    assert _checked(page.content) == expected
    assert "Accept-Language" in page["Vary"]


@pytest.mark.django_db
def test_a_post_without_a_language_takes_the_browsers(
    client: Client,
    smtp_server,
) -> None:
    response = _ask(client, "luc@example.fr", HTTP_ACCEPT_LANGUAGE=FRENCH_BROWSER)
    assert response.status_code == 302 and response["Location"].endswith("?language=fr")
    assert Requester.objects.get().language == "fr"
    assert smtp_server.to("luc@example.fr")[0].subject.startswith("Confirmez votre demande")


@pytest.mark.django_db
def test_a_chosen_language_wins_over_the_browsers(
    client: Client,
    smtp_server,
) -> None:
    _ask(client, "max@example.com", language="en", HTTP_ACCEPT_LANGUAGE=FRENCH_BROWSER)
    assert Requester.objects.get().language == "en"
    assert smtp_server.to("max@example.com")[0].subject == "Confirm your image request"


@pytest.mark.django_db
def test_a_bad_language_is_refused_with_a_form_error_and_nothing_is_saved(
    client: Client,
    smtp_server,
) -> None:
    response = _ask(client, "eve@example.com", language="de")
    assert response.status_code == 400
    assert "Choose English or Français / Choisissez English ou Français." in (
        response.content.decode()
    )
    assert not ImageRequest.objects.exists()
    assert not Requester.objects.exists()
    assert not RequestSubmission.objects.exists()
    assert smtp_server.received == []


@pytest.mark.django_db
def test_asking_again_takes_the_new_language_choice(
    client: Client,
    smtp_server,
) -> None:
    _ask(client, "ana@example.com", language="fr")
    _ask(client, "ana@example.com", language="en")
    assert Requester.objects.get().language == "en"
    subjects = [m.subject for m in smtp_server.to("ana@example.com")]
    assert subjects == ["Confirmez votre demande d'image", "Confirm your image request"]


@pytest.mark.django_db
def test_each_requester_hears_of_a_status_change_in_their_own_language(
    client: Client,
    smtp_server,
    manager,
) -> None:
    asked = {"fr1@example.fr": "fr", "en1@example.com": "en", "fr2@example.fr": "fr"}
    for n, (email, language) in enumerate(asked.items()):
        _ask(Client(), email, language=language, name="Rocky Linux 10", ip=f"192.0.2.{n}")
        _confirm(smtp_server, email)
    _ask(Client(), "late@example.fr", language="fr", name="Rocky Linux 10", ip="192.0.2.9")
    request = ImageRequest.objects.get()
    before = len(smtp_server.received)
    change = post_status(client, manager, request, "building", "x86_64 d'abord / x86_64 first.")
    assert tasks.send_request_status_emails_task(change.pk) == "sent 3, failed 0, already told 0"
    news = {r.rcpt_tos[0]: r for r in smtp_server.received[before:]}
    assert sorted(news) == sorted(asked)  # the unconfirmed requester is not told
    for email in ("fr1@example.fr", "fr2@example.fr"):
        french = news[email]
        assert french.subject == (
            f"Votre demande d'image n° {request.pk} : en cours de construction"
        )
        text = french.part("text/plain")
        assert (
            "L'image que vous avez demandée, Rocky Linux 10, est maintenant en cours de "
            "construction." in text
        )
        assert "x86_64 d'abord / x86_64 first." in text
        assert "Pour ne plus recevoir de nouvelles de cette demande : http" in text
        assert '<html lang="fr">' in french.part("text/html")
        assert str(french.message["List-Unsubscribe"]).strip().startswith("<http")
    english = news["en1@example.com"]
    assert english.subject == f"Your image request #{request.pk}: building"
    assert "The OS image you asked for, Rocky Linux 10, is now building." in (
        english.part("text/plain")
    )
    assert '<html lang="en">' in english.part("text/html")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "word"),
    [
        (RequestStatus.PLANNED, "prévue"),
        (RequestStatus.RELEASED, "publiée"),
        (RequestStatus.DECLINED, "refusée"),
        (RequestStatus.NEW, "en attente d'examen"),
    ],
)
def test_french_status_emails_name_every_status(
    smtp_server,
    status: str,
    word: str,
) -> None:
    request = ImageRequest.objects.create(kind="instantapp", name="GitLab", status="building")
    Requester.objects.create(
        request=request, email="zoe@example.fr", language="fr", confirmed_at=request.created_at
    )
    change = request.change_status(status, "")
    assert str(image_requests.send_status_emails(change)) == "sent 1, failed 0, already told 0"
    [message] = smtp_server.to("zoe@example.fr")
    assert message.subject == f"Votre demande d'InstantApp n° {request.pk} : {word}"
    assert f"L'InstantApp que vous avez demandée, GitLab, est maintenant {word}." in (
        message.part("text/plain")
    )


def test_every_status_has_a_french_word() -> None:
    assert set(image_requests.STATUS_WORDS["fr"]) == set(RequestStatus.values)
    assert set(image_requests.STATUS_WORDS["en"]) == set(RequestStatus.values)


@pytest.mark.django_db(transaction=True)
def test_requesters_recorded_before_languages_existed_get_english() -> None:
    before = [("lifecycle", "0002_alertsent_imagerequest_requeststatuschange_and_more")]
    after = [("lifecycle", "0003_requester_language")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        request = old.get_model("lifecycle", "ImageRequest").objects.create(
            kind="os", name="Alpine", normalized_name="alpine"
        )
        old.get_model("lifecycle", "Requester").objects.create(
            request_id=request.pk, email="old@example.com"
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
    try:
        assert Requester.objects.get(email="old@example.com").language == "en"
    finally:
        # Back to the latest schema: the tests after this one (in a random order) need every
        # later migration's tables.
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
