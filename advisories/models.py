"""Advisories imported from the distributions' OSV exports, and what each version is exposed to.

- `EcosystemImport`: one row per downloaded export (`Debian`, `Ubuntu`, ...): the validators
  of the last download (ETag, Last-Modified), the packages its last scan looked for, and how
  the last attempt went, said in plain words;
- `Advisory`: one affected package of one OSV record in one versioned ecosystem
  (`Debian:12`), with its ranges as the record gives them;
- `Exposure`: a version holds a package an advisory affects, at an installed version the
  ranges say is affected;
- `VersionCoverage`: whether a version's exposure is known, as its last matching found;
- `ImagePolicy`: an image's own minimum severity for security rebuilds.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from catalog.models import Image, ImageVersion


class Severity(models.TextChoices):
    """The severities the advisories use, in increasing order (see `RANK`)."""

    UNKNOWN = "unknown", "Unknown"
    NEGLIGIBLE = "negligible", "Negligible"
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


RANK = {value: rank for rank, value in enumerate(Severity.values)}


class EcosystemImport(models.Model):
    """The state of one export's import; a failure never clears what was stored."""

    ecosystem = models.CharField(max_length=64, unique=True, help_text="e.g. Debian, Rocky Linux.")
    etag = models.CharField(max_length=255, blank=True)
    last_modified = models.CharField(max_length=64, blank=True)
    archive_path = models.CharField(max_length=500, blank=True)
    scanned_packages = models.JSONField(
        default=dict, blank=True, help_text="Package names the last scan looked for, by ecosystem."
    )
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_ok = models.BooleanField(null=True, blank=True)
    last_message = models.TextField(blank=True)

    class Meta:
        ordering = ["ecosystem"]

    def __str__(self) -> str:
        return self.ecosystem


class Advisory(models.Model):
    """One affected package of one OSV record, in one versioned ecosystem."""

    osv_id = models.CharField(max_length=128, db_index=True)
    ecosystem = models.CharField(max_length=64, help_text="e.g. Debian:12, Ubuntu:22.04:LTS.")
    package = models.CharField(max_length=255)
    aliases = models.JSONField(default=list, blank=True)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.UNKNOWN)
    summary = models.TextField(blank=True)
    published = models.DateTimeField(null=True, blank=True)
    modified = models.DateTimeField()
    ranges = models.JSONField(
        default=list,
        blank=True,
        help_text="[[event, ...], ...], each event {introduced|fixed|...}.",
    )
    versions = models.JSONField(default=list, blank=True, help_text="Affected versions listed.")

    class Meta:
        ordering = ["ecosystem", "package", "osv_id"]
        verbose_name_plural = "advisories"
        constraints = [
            models.UniqueConstraint(
                fields=["osv_id", "ecosystem", "package"], name="unique_advisory_package"
            )
        ]
        indexes = [models.Index(fields=["ecosystem", "package"], name="advisory_package")]

    def __str__(self) -> str:
        return f"{self.osv_id} {self.ecosystem} {self.package}"

    @property
    def url(self) -> str:
        return f"https://osv.dev/vulnerability/{self.osv_id}"


class Exposure(models.Model):
    """A version holds a package an advisory affects; kept while it stays true."""

    version = models.ForeignKey(ImageVersion, on_delete=models.CASCADE, related_name="exposures")
    advisory = models.ForeignKey(Advisory, on_delete=models.CASCADE, related_name="exposures")
    package = models.CharField(max_length=255, help_text="The installed package (binary name).")
    installed_version = models.CharField(max_length=255)
    fixed_version = models.CharField(max_length=255, blank=True, help_text="Blank: no fix yet.")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.UNKNOWN)
    first_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["version", "advisory__osv_id", "package"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "advisory", "package"], name="unique_exposure"
            )
        ]

    def __str__(self) -> str:
        return f"{self.version}: {self.advisory.osv_id} {self.package}"

    @property
    def fixable(self) -> bool:
        return bool(self.fixed_version)


class VersionCoverage(models.Model):
    """Whether a version's exposure is known, as its last matching found: "covered",
    "unknown" (no source package names where they are needed) or "not covered"."""

    version = models.OneToOneField(
        ImageVersion, on_delete=models.CASCADE, related_name="exposure_coverage"
    )
    status = models.CharField(max_length=16)
    reason = models.CharField(max_length=255, blank=True)
    matched_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.version_id}: {self.status}"


class ImagePolicy(models.Model):
    """An image's own minimum severity for security rebuilds (default: the setting)."""

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="advisory_policy")
    rebuild_min_severity = models.CharField(
        max_length=16,
        choices=[c for c in Severity.choices if c[0] != Severity.UNKNOWN],
        blank=True,
        help_text="Blank: VULN_REBUILD_MIN_SEVERITY.",
    )

    class Meta:
        verbose_name_plural = "image policies"

    def __str__(self) -> str:
        return f"{self.image.label}: {self.rebuild_min_severity or 'default'}"
