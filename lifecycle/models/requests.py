"""Image requests: customers ask for a new image or InstantApp, managers triage them.

Requests for the same thing merge: a request is identified by its kind and its normalized
name, and each person asking is a `Requester` that counts only once their email address is
confirmed through a signed link; each is written to in the language they chose (English or
French). Every status change is a `RequestStatusChange` row, and the emails telling
requesters about it go through the alert ledger (one per requester per change).
"""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.db.models import Count, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from catalog.choices import ImageKind
from lifecycle.models.notices import Language

__all__ = [
    "ImageRequest",
    "RequestStatus",
    "RequestStatusChange",
    "RequestSubmission",
    "Requester",
    "normalize_request_name",
]


def normalize_request_name(name: str) -> str:
    """The name requests are merged on: "Ubuntu 24.04 LTS" and "ubuntu-24.04-lts" are one."""
    text = unicodedata.normalize("NFKC", name).casefold()
    return " ".join(re.split(r"[^\w]+|_", text)).strip()[:200]


class RequestStatus(models.TextChoices):
    """Where a request stands; "new" until a manager triages it."""

    NEW = "new", "New"
    PLANNED = "planned", "Planned"
    BUILDING = "building", "Building"
    RELEASED = "released", "Released"
    DECLINED = "declined", "Declined"


class ImageRequestQuerySet(models.QuerySet["ImageRequest"]):
    def with_counts(self) -> ImageRequestQuerySet:
        """Annotate `confirmed_count`, the number of requesters who confirmed their address."""
        return self.annotate(
            confirmed_count=Count("requesters", filter=Q(requesters__confirmed_at__isnull=False))
        )

    def confirmed(self) -> QuerySet[ImageRequest]:
        """Requests that count: at least one requester confirmed their address."""
        # A Q: the type checker's Django plugin cannot see the annotation made in with_counts.
        return self.with_counts().filter(Q(confirmed_count__gt=0))


class ImageRequest(models.Model):
    """One thing customers asked for (an OS image or an InstantApp), however many asked."""

    kind = models.CharField(max_length=16, choices=ImageKind.choices)
    name = models.CharField(max_length=200, help_text="As the first requester wrote it.")
    normalized_name = models.CharField(max_length=200, editable=False)
    description = models.TextField(blank=True, help_text="The first requester's description.")
    status = models.CharField(
        max_length=16, choices=RequestStatus.choices, default=RequestStatus.NEW, db_index=True
    )
    note = models.TextField(blank=True, help_text="The managers' note, sent with status changes.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ImageRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "normalized_name"], name="one_image_request_per_kind_and_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def save(self, *args: object, **kwargs: object) -> None:
        self.normalized_name = normalize_request_name(self.name)
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def get_absolute_url(self) -> str:
        return reverse("lifecycle:request_detail", args=[self.pk])

    def change_status(
        self, status: str, note: str = "", user: User | AnonymousUser | None = None
    ) -> RequestStatusChange | None:
        """Move to `status` with a note; None when nothing changed (no email is due then)."""
        if status not in RequestStatus.values:
            raise ValueError(f"{status} is not a request status")
        note = note.strip()
        if status == self.status and note == self.note:
            return None
        previous = self.status
        self.status, self.note = status, note
        self.save(update_fields=["status", "note", "updated_at"])
        return RequestStatusChange.objects.create(
            request=self,
            previous_status=previous,
            status=status,
            note=note,
            changed_by=user if user is not None and user.is_authenticated else None,
        )


class Requester(models.Model):
    """One person asking for a request; counted once their address is confirmed."""

    request = models.ForeignKey(ImageRequest, on_delete=models.CASCADE, related_name="requesters")
    email = models.EmailField(help_text="Lower-cased.")
    language = models.CharField(
        max_length=8,
        choices=Language.choices,
        default=Language.EN,
        help_text="The language of the emails they get (their latest choice on the form).",
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(
        null=True, blank=True, help_text="Still counted, but told nothing more."
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "email"], name="one_requester_per_request")
        ]

    def __str__(self) -> str:
        return f"{self.email} asks for {self.request_id}"

    def audit_repr(self) -> str:
        """How the audit log, which Viewers read, names a requester: by id, not by address."""
        return f"requester {self.pk} of request {self.request_id}"

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    def confirm(self) -> bool:
        """Count this requester; False if they were counted already."""
        now = timezone.now()
        done = Requester.objects.filter(pk=self.pk, confirmed_at__isnull=True).update(
            confirmed_at=now
        )
        if done:
            self.confirmed_at = now
        return bool(done)

    def unsubscribe(self) -> bool:
        """Stop the status emails (the request still counts them); False if already done."""
        now = timezone.now()
        done = Requester.objects.filter(pk=self.pk, unsubscribed_at__isnull=True).update(
            unsubscribed_at=now
        )
        if done:
            self.unsubscribed_at = now
        return bool(done)


class RequestSubmission(models.Model):
    """One accepted submission of the public form, kept for the rate limit (by IP and email)."""

    ip = models.GenericIPAddressField(null=True, blank=True)
    email = models.EmailField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["ip", "created_at"], name="submission_ip_created"),
            models.Index(fields=["email", "created_at"], name="submission_email_created"),
        ]

    def __str__(self) -> str:
        return f"submission from {self.ip} ({self.email}) at {self.created_at:%Y-%m-%d %H:%M}"


class RequestStatusChange(models.Model):
    """A manager moved a request: the requesters are told once each (alert ledger)."""

    request = models.ForeignKey(
        ImageRequest, on_delete=models.CASCADE, related_name="status_changes"
    )
    previous_status = models.CharField(max_length=16, choices=RequestStatus.choices)
    status = models.CharField(max_length=16, choices=RequestStatus.choices)
    note = models.TextField(blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.previous_status} -> {self.status}"
