"""The emails of the notices: one function per kind, three templates per message.

Templates live in templates/emails/notices/<kind>_{subject,body}_<language>.{txt,html};
a customer without a language gets English. Every message carries a signed unsubscribe
link in its body and in the List-Unsubscribe headers (one-click, RFC 8058). The image
requests' emails are rendered the same way (`render_localized`, templates/emails/requests/).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import make_msgid

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from lifecycle.models import Customer, Language, Notice, Usage

UNSUBSCRIBE_SALT = "lifecycle.notices.unsubscribe"


@dataclass(frozen=True)
class Rendered:
    """A message's three parts, as the preview shows them."""

    subject: str
    text: str
    html: str


def unsubscribe_token(customer: Customer) -> str:
    """A signed, timestamped token naming the customer (checked by the unsubscribe view)."""
    return signing.TimestampSigner(salt=UNSUBSCRIBE_SALT).sign(str(customer.pk))


def customer_id_from_token(token: str) -> int | None:
    """The customer a token names, or None if it is forged or too old."""
    max_age = dt.timedelta(days=settings.NOTICE_UNSUBSCRIBE_MAX_AGE_DAYS)
    try:
        value = signing.TimestampSigner(salt=UNSUBSCRIBE_SALT).unsign(token, max_age=max_age)
        return int(value)
    except (signing.BadSignature, ValueError):
        return None


def unsubscribe_url(customer: Customer) -> str:
    base = settings.SITE_URL.rstrip("/")
    return base + reverse("lifecycle:unsubscribe", args=[unsubscribe_token(customer)])


def instances_by_zone(usages: Iterable[Usage]) -> list[dict]:
    """[{"zone": ..., "servers": [...]}] in zone order, for the templates."""
    zones: dict[str, list[Usage]] = {}
    for usage in usages:
        zones.setdefault(usage.zone, []).append(usage)
    return [
        {"zone": zone, "servers": sorted(items, key=lambda u: (u.server_name, u.server_id))}
        for zone, items in sorted(zones.items())
    ]


def render_localized(folder: str, kind: str, language: str, context: dict) -> Rendered:
    """The three parts of emails/<folder>/<kind>_*_<language>; English for an unknown language."""
    language = language if language in Language.values else Language.EN
    with translation.override(language):
        subject = render_to_string(f"emails/{folder}/{kind}_subject_{language}.txt", context)
        text = render_to_string(f"emails/{folder}/{kind}_body_{language}.txt", context)
        html = render_to_string(f"emails/{folder}/{kind}_body_{language}.html", context)
    # A newline in a subject would end the header: keep one line.
    one_line = " ".join(subject.split())
    return Rendered(one_line, text, html)


def _message(
    rendered: Rendered, customer: Customer, unsubscribe: str, to: str | None, message_id: str
) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=rendered.subject,
        body=rendered.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to or customer.email],
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Message-ID": message_id or new_message_id(),
        },
    )
    message.attach_alternative(rendered.html, "text/html")
    return message


def message_id_domain() -> str:
    """The right-hand side of our Message-IDs: the sender address's domain."""
    return settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "localhost"


def new_message_id() -> str:
    return make_msgid(domain=message_id_domain())


def _context(notice: Notice, usages: Iterable[Usage], unsubscribe: str, test: bool) -> dict:
    image = notice.image
    # The real distance to the date: a late notice says "in 20 days", not its offset's 30.
    days_left = max((notice.deprecation_date - timezone.localdate()).days, 0)
    return {
        "customer": notice.customer,
        "image": image,
        "replacement": image.replacement,
        "deprecation_date": notice.deprecation_date,
        "previous_date": notice.previous_date,
        "days_left": days_left,
        "zones": instances_by_zone(usages),
        "unsubscribe_url": unsubscribe,
        "test": test,
    }


def _render(notice: Notice, usages: Iterable[Usage], *, test: bool) -> tuple[Rendered, str]:
    """The subject, text and HTML of a ledger row's email, and its unsubscribe URL: a notice
    ahead of (or on) the deprecation date, or a correction (the date announced before has
    moved)."""
    unsubscribe = unsubscribe_url(notice.customer)
    context = _context(notice, usages, unsubscribe, test)
    kind = "correction" if notice.is_correction else "deprecation"
    language = notice.customer.email_language
    return render_localized("notices", kind, language, context), unsubscribe


def render_notice(notice: Notice, usages: Iterable[Usage], *, test: bool = False) -> Rendered:
    """The rendered parts of a ledger row's email, whatever its kind (for the preview)."""
    return _render(notice, usages, test=test)[0]


def notice_email(
    notice: Notice,
    usages: Iterable[Usage],
    *,
    to: str | None = None,
    message_id: str = "",
    test: bool = False,
) -> EmailMultiAlternatives:
    """The email of a ledger row: an offset notice (90, 30, 7 days before, on the day) or a
    correction telling customers that the deprecation date they were given has moved."""
    rendered, unsubscribe = _render(notice, usages, test=test)
    return _message(rendered, notice.customer, unsubscribe, to, message_id)
