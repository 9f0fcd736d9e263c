"""Image requests from customers: the public form's work, confirmation, status emails.

- A submission names a kind (OS image or InstantApp), a name, a description and an email
  address. Requests merge on (kind, normalized name); each address is one `Requester`,
  counted once it is confirmed through a signed, expiring link (TimestampSigner).
- The form is rate-limited in the database (not the cache, which may be per process): at
  most IMAGE_REQUEST_RATE_LIMIT accepted submissions per IP address and per email address
  within IMAGE_REQUEST_RATE_WINDOW_MINUTES. The IP address is the client's as the
  TRUSTED_PROXY_COUNT proxies in front of the dashboard saw it (`config.client_ip`).
- The confirmation email goes through the task queue, never from the web request: a slow
  or dead mail server must not hold a web thread of a public form.
- No text a requester typed goes into an email's subject (a header, and what a spam filter
  judges the sender by); the body quotes it.
- When a manager changes a request's status, each confirmed requester gets one email per
  change, through the alert ledger (row written before sending), with a signed link to stop
  those emails (List-Unsubscribe).
- Every requester chose a language on the form (English or French, preset from the browser's
  Accept-Language); their emails are rendered like the deprecation notices, from
  templates/emails/requests/<kind>_{subject,body}_<language>.{txt,html}.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from catalog.choices import ImageKind
from lifecycle.alerts import site_url
from lifecycle.emails import render_localized
from lifecycle.models import (
    AlertKind,
    AlertSent,
    ImageRequest,
    Language,
    Requester,
    RequestStatus,
    RequestStatusChange,
    RequestSubmission,
    normalize_request_name,
)
from lifecycle.notices import deliver

log = logging.getLogger(__name__)

CONFIRM_SALT = "lifecycle.image_requests.confirm"
CONFIRMATION_TASK = "lifecycle.tasks.send_request_confirmation_task"
UNSUBSCRIBE_SALT = "lifecycle.image_requests.unsubscribe"

# What the emails call each status. The choices' labels are the dashboard's (English); the
# French words agree with "la demande" and "l'image", both feminine.
STATUS_WORDS: dict[str, dict[str, str]] = {
    Language.EN: {status.value: status.label.lower() for status in RequestStatus},
    Language.FR: {
        RequestStatus.NEW: "en attente d'examen",
        RequestStatus.PLANNED: "prévue",
        RequestStatus.BUILDING: "en cours de construction",
        RequestStatus.RELEASED: "publiée",
        RequestStatus.DECLINED: "refusée",
    },
}


def rate_limit() -> int:
    """Accepted submissions allowed per IP and per email in a window (default 5)."""
    return settings.IMAGE_REQUEST_RATE_LIMIT


def rate_window() -> dt.timedelta:
    """The rate limit's window (IMAGE_REQUEST_RATE_WINDOW_MINUTES, default 60)."""
    return dt.timedelta(minutes=settings.IMAGE_REQUEST_RATE_WINDOW_MINUTES)


def confirm_max_age() -> dt.timedelta:
    """How long a confirmation link works (IMAGE_REQUEST_CONFIRM_MAX_AGE_HOURS, default 48)."""
    return dt.timedelta(hours=settings.IMAGE_REQUEST_CONFIRM_MAX_AGE_HOURS)


def status_word(status: str, language: str) -> str:
    """A status as an email in `language` says it ("planned", "prévue")."""
    words = STATUS_WORDS.get(language, STATUS_WORDS[Language.EN])
    return words.get(status, status)


def language_from_accept(header: str) -> str:
    """French when the browser ranks it above English in Accept-Language, else English."""
    best, best_q = Language.EN.value, 0.0
    for item in header[:1000].split(","):
        tag, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        primary = tag.split("-")[0].lower()
        if primary in Language.values and q > best_q:  # the first of equals wins
            best, best_q = primary, q
    return best


class ImageRequestForm(forms.Form):
    """The public form: what to build, why, and where to tell the requester (in which language).

    A language left out (a client posting without it) is the page's default: the browser's.
    """

    kind = forms.ChoiceField(choices=ImageKind.choices, initial=ImageKind.OS)
    name = forms.CharField(
        max_length=200, help_text="For example: Ubuntu 26.04 LTS, or WordPress on Debian 13."
    )
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        max_length=4000,
        required=False,
        help_text="What you would use it for, versions, packages you need.",
    )
    email = forms.EmailField(help_text="We send a link to confirm it, then news of the request.")
    language = forms.ChoiceField(
        label="Language of our emails / Langue de nos e-mails",
        choices=Language.choices,
        required=False,
        widget=forms.RadioSelect,
        error_messages={
            "invalid_choice": "Choose English or Français / Choisissez English ou Français."
        },
    )

    def __init__(self, *args: Any, default_language: str = Language.EN, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_language = default_language
        self.fields["language"].initial = default_language

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not normalize_request_name(name):
            raise forms.ValidationError("Give the image a name with letters or digits.")
        return name

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()

    def clean_language(self) -> str:
        return self.cleaned_data["language"] or self.default_language


class StatusForm(forms.Form):
    """A manager's triage decision: a status and a note sent to the requesters."""

    status = forms.ChoiceField(choices=RequestStatus.choices)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


def is_rate_limited(ip: str | None, email: str, now: dt.datetime | None = None) -> bool:
    """True when this IP or this email already made `rate_limit()` submissions in the window."""
    since = (now or timezone.now()) - rate_window()
    recent = RequestSubmission.objects.filter(created_at__gte=since)
    limit = rate_limit()
    if ip and recent.filter(ip=ip).count() >= limit:
        return True
    return recent.filter(email=email).count() >= limit


def submit(
    kind: str,
    name: str,
    description: str,
    email: str,
    ip: str | None,
    language: str = Language.EN,
) -> Requester:
    """Record a submission: merged into the request for the same thing, one row per email.

    Asking again keeps the requester but takes their new language choice.
    """
    RequestSubmission.objects.create(ip=ip, email=email)
    normalized = normalize_request_name(name)
    for _attempt in range(2):  # a concurrent first submission may win the unique constraint
        try:
            with transaction.atomic():
                request, _created = ImageRequest.objects.get_or_create(
                    kind=kind,
                    normalized_name=normalized,
                    defaults={"name": name, "description": description},
                )
                requester, created = Requester.objects.get_or_create(
                    request=request,
                    email=email,
                    defaults={"description": description, "language": language},
                )
                if not created and requester.language != language:
                    requester.language = language
                    requester.save(update_fields=["language"])
                return requester
        except IntegrityError:
            continue
    raise RuntimeError("the image request could not be recorded")


# --- signed links ----------------------------------------------------------------------------


def confirmation_token(requester: Requester) -> str:
    """A signed, timestamped token naming the requester (not their address: URLs get logged)."""
    return signing.TimestampSigner(salt=CONFIRM_SALT).sign(str(requester.pk))


def _requester_from(token: str, salt: str, max_age: dt.timedelta | None) -> Requester | None:
    try:
        value = signing.TimestampSigner(salt=salt).unsign(token, max_age=max_age)
        return Requester.objects.select_related("request").filter(pk=int(value)).first()
    except (signing.BadSignature, ValueError):
        return None


def requester_from_confirmation(token: str) -> Requester | None:
    """The requester a confirmation link names, or None if forged, altered or expired."""
    return _requester_from(token, CONFIRM_SALT, confirm_max_age())


def unsubscribe_token(requester: Requester) -> str:
    return signing.TimestampSigner(salt=UNSUBSCRIBE_SALT).sign(str(requester.pk))


def requester_from_unsubscribe(token: str) -> Requester | None:
    """The requester a stop link names (these links do not expire: they are in old emails)."""
    return _requester_from(token, UNSUBSCRIBE_SALT, None)


def confirmation_url(requester: Requester) -> str:
    return site_url(reverse("lifecycle:request_confirm", args=[confirmation_token(requester)]))


def unsubscribe_url(requester: Requester) -> str:
    return site_url(reverse("lifecycle:request_unsubscribe", args=[unsubscribe_token(requester)]))


# --- emails ----------------------------------------------------------------------------------


def _email(
    kind: str, requester: Requester, context: dict[str, Any], headers: dict[str, str] | None = None
) -> EmailMultiAlternatives:
    rendered = render_localized("requests", kind, requester.language, context)
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[requester.email],
        headers=headers or {},
    )
    message.attach_alternative(rendered.html, "text/html")
    return message


def confirmation_email(requester: Requester) -> EmailMultiAlternatives:
    """The email asking a requester to confirm their address (the request counts after)."""
    hours = int(confirm_max_age().total_seconds() // 3600)
    context = {
        "request": requester.request,
        "requester": requester,
        "confirm_url": confirmation_url(requester),
        "hours": hours,
    }
    return _email("confirm", requester, context)


def status_email(requester: Requester, change: RequestStatusChange) -> EmailMultiAlternatives:
    """The email telling a requester, in their language, that their request's status changed."""
    stop = unsubscribe_url(requester)
    context = {
        "request": change.request,
        "change": change,
        "status": status_word(change.status, requester.language),
        "requester": requester,
        "unsubscribe_url": stop,
    }
    headers = {
        "List-Unsubscribe": f"<{stop}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    return _email("status", requester, context, headers)


def send_confirmation(requester: Requester) -> str:
    """Send the confirmation link; "" when it left, else the error (logged)."""
    connection = get_connection()
    try:
        error = deliver(connection, confirmation_email(requester))
    finally:
        connection.close()
    if error:
        log.warning("confirmation of requester %s not sent: %s", requester.pk, error)
    return error


@dataclass
class StatusReport:
    """What telling the requesters about one status change did."""

    sent: int = 0
    failed: int = 0
    already: int = 0

    def __str__(self) -> str:
        return f"sent {self.sent}, failed {self.failed}, already told {self.already}"


def send_status_emails(
    change: RequestStatusChange, connection: BaseEmailBackend | None = None
) -> StatusReport:
    """One email per confirmed, subscribed requester for this change; never twice."""
    report = StatusReport()
    requesters = change.request.requesters.filter(
        confirmed_at__isnull=False, unsubscribed_at__isnull=True
    ).order_by("id")
    connection = connection or get_connection()
    try:
        for requester in requesters:
            row = AlertSent.claim(AlertKind.REQUEST_STATUS, f"{change.pk}:{requester.pk}")
            if row is None:
                report.already += 1
                continue
            error = deliver(connection, status_email(requester, change))
            row.close(error)
            if error:
                log.warning("status email to requester %s failed: %s", requester.pk, error)
                report.failed += 1
            else:
                report.sent += 1
    finally:
        connection.close()
    return report
