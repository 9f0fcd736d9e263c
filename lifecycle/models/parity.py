"""Zone parity: what the daily cloud check found missing for the current versions."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from catalog.choices import StorageType
from catalog.models import ImageVersion, Zone

__all__ = ["ParityProblem", "ZoneParityGap"]


class ParityProblem(models.TextChoices):
    NOT_PUBLISHED = "not_published", "Not published"
    IMAGE_GONE = "image_gone", "Image gone from the cloud"
    IMAGE_UNAVAILABLE = "image_unavailable", "Image not available"
    NOT_OFFERED = "not_offered", "Not in the Marketplace"
    NOT_CHECKED = "not_checked", "Could not be checked"


class ZoneParityGap(models.Model):
    """One difference between what a current version should be (available in every enabled
    zone, on every storage type of its image, and offered in the Marketplace there) and what
    the cloud said at the last check. The check replaces a zone's rows only when it could read
    that zone: a zone it could not read keeps its last rows, plus a NOT_CHECKED row saying why."""

    version = models.ForeignKey(
        ImageVersion, on_delete=models.CASCADE, null=True, blank=True, related_name="parity_gaps"
    )
    zone = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="parity_gaps")
    storage_type = models.CharField(max_length=16, choices=StorageType.choices, blank=True)
    problem = models.CharField(max_length=32, choices=ParityProblem.choices)
    detail = models.TextField(blank=True)
    found_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["zone__code", "version__image__label", "storage_type", "id"]

    def __str__(self) -> str:
        return f"{self.version or 'zone'} in {self.zone.code}: {self.get_problem_display()}"
