"""Releases: which version was published as an image's current version, by whom and when.

A Release row is written when a version is released (lifecycle.releases.release) and closed
when it is withdrawn. The image's *current* release is its latest release still open; the
version states (released, withdrawn) live on catalog.ImageVersion so that catalogue pages
need nothing from this app.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import models
from django.utils import timezone

from catalog.models import Image, ImageVersion

__all__ = ["FeedChange", "Release", "ReleaseQuerySet"]


class ReleaseQuerySet(models.QuerySet["Release"]):
    def active(self) -> ReleaseQuerySet:
        """Releases not withdrawn: what customers may get from the label or by id."""
        return self.filter(withdrawn_at__isnull=True)

    def of_image(self, image: Image) -> ReleaseQuerySet:
        return self.filter(version__image=image)

    def newest_first(self) -> ReleaseQuerySet:
        return self.order_by("-released_at", "-id")

    def current_for(self, image: Image) -> Release | None:
        """The image's current release: the latest one still open."""
        return self.of_image(image).active().select_related("version").newest_first().first()


class Release(models.Model):
    """One release of a version: it became the version an image's label resolves to."""

    version = models.ForeignKey(ImageVersion, on_delete=models.PROTECT, related_name="releases")
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="releases",
    )
    released_at = models.DateTimeField(default=timezone.now, db_index=True)
    readiness = models.TextField(
        blank=True, help_text="What the test matrix said when the version was released."
    )
    override_reason = models.TextField(
        blank=True, help_text="Why it was released although the matrix was not green."
    )
    publisher = models.CharField(max_length=16, blank=True)
    marketplace_version_id = models.CharField(max_length=64, blank=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    withdraw_reason = models.TextField(blank=True)

    objects = ReleaseQuerySet.as_manager()

    class Meta:
        ordering = ["-released_at", "-id"]
        get_latest_by = "released_at"

    def __str__(self) -> str:
        return f"Release of {self.version} at {self.released_at:%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        return self.withdrawn_at is None

    @property
    def overridden(self) -> bool:
        """True when it went out without a green matrix."""
        return bool(self.override_reason)

    def withdraw(
        self, user: User | AnonymousUser | None, reason: str, now: dt.datetime | None = None
    ) -> bool:
        """Close this release; does nothing (returns False) when it is already withdrawn."""
        if not self.is_active:
            return False
        self.withdrawn_at = now or timezone.now()
        self.withdrawn_by = user if user is not None and user.is_authenticated else None
        self.withdraw_reason = reason
        self.save(update_fields=["withdrawn_at", "withdrawn_by", "withdraw_reason"])
        return True


class FeedChange(models.Model):
    """A change to rows the catalogue feed is built from, recorded by the database itself.

    Triggers on every table the feed reads (lifecycle.feed_stamp, installed after each
    migrate) add a row on each insert, delete and update of a column the feed shows, so that
    no writer can skip it: not `QuerySet.update()`, a raw SQL statement or another program.
    The feed's ETag is the sum of `changes` with the newest row's random `token`: one query.
    Rows are folded into one (their sum kept) as they pile up.
    """

    changes = models.PositiveBigIntegerField(default=1)
    token = models.CharField(max_length=32)

    def __str__(self) -> str:
        return f"{self.changes} change(s), {self.token}"
