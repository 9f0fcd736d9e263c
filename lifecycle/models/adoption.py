"""Adoption: the Marketplace labels the factory found and could not match to an image."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from catalog.models import Image

__all__ = ["LabelDecision", "MarketplaceLabel"]


class LabelDecision(models.TextChoices):
    PENDING = "pending", "Waiting for a manager"
    MAPPED = "mapped", "Mapped to an image"
    IGNORED = "ignored", "Ignored"


class MarketplaceLabel(models.Model):
    """A Marketplace label with no catalogue image of that label (`lifecycle.adoption`).

    A manager maps it to an image (its versions are then adopted into that image) or ignores
    it (adoption leaves it alone). What the Marketplace said of it is refreshed by each run
    only when it changed, so that a run that finds nothing new writes nothing."""

    label = models.CharField(max_length=64, unique=True)
    marketplace_image_id = models.CharField(max_length=64)
    name = models.CharField(max_length=255, blank=True)
    version_count = models.PositiveIntegerField(default=0)
    valid_until = models.DateTimeField(null=True, blank=True)
    decision = models.CharField(
        max_length=16, choices=LabelDecision.choices, default=LabelDecision.PENDING
    )
    image = models.ForeignKey(
        Image,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="marketplace_labels",
        help_text="The catalogue image this label's versions are adopted into.",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    found_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["decision", "label"]
        permissions = [("adopt_marketplace", "Can adopt the images of the cloud's Marketplace")]

    def __str__(self) -> str:
        return f"Marketplace label {self.label} ({self.get_decision_display().lower()})"
