"""Recorded refresh triggers: security advisories and the daily upstream release checks.

Builds carry their trigger and reason themselves (`builds.Build.trigger`/`reason`); these
rows keep what the trigger *was* (an advisory's packages and fixed version, what a check
saw upstream and why it did or did not rebuild), so the dashboard can show it later.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from builds.models import Build
from catalog.choices import Arch
from catalog.models import Image, ImageVersion
from lifecycle import versions

__all__ = [
    "CheckOutcome",
    "PackageStatus",
    "SecurityAdvisory",
    "UpstreamCheck",
]


class PackageStatus(models.TextChoices):
    """Where one package of a version stands against an advisory."""

    FIXED = "fixed", "Fixed version installed"
    VULNERABLE = "vulnerable", "Older than the fixed version"
    INSTALLED = "installed", "Installed (no fixed version given)"
    NOT_INSTALLED = "not_installed", "Not installed"
    UNKNOWN_ORDERING = "unknown_ordering", "Cannot compare: unknown version ordering"


class SecurityAdvisory(models.Model):
    """A vulnerability a manager reported: affected packages and the version that fixes them."""

    advisory_id = models.CharField(
        max_length=64, help_text="e.g. DSA-5912-1, USN-7000-1, RHSA-2026:1234, CVE-2026-1234."
    )
    packages = models.JSONField(default=list, help_text="Affected binary package names.")
    fixed_version = models.CharField(
        max_length=128, blank=True, help_text="Blank: every installed version is affected."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    images = models.ManyToManyField(
        Image, blank=True, related_name="security_advisories", help_text="Images matched."
    )
    builds = models.ManyToManyField(
        Build, blank=True, related_name="security_advisories", help_text="Rebuilds queued."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "security advisories"

    def __str__(self) -> str:
        return f"{self.advisory_id} ({', '.join(self.packages)})"

    def status_of(self, version: ImageVersion) -> list[tuple[str, str, str]]:
        """(package, installed version or "", PackageStatus) for each affected package.

        Compared with the ordering of the version's distribution (the base image's for an
        InstantApp), never as strings.
        """
        scheme = versions.scheme_for(_distribution_of(version.image))
        installed = version.package_map()
        result: list[tuple[str, str, str]] = []
        for name in self.packages:
            current = installed.get(name)
            if current is None:
                status = PackageStatus.NOT_INSTALLED
            elif not self.fixed_version:
                status = PackageStatus.INSTALLED
            elif scheme is None:
                status = PackageStatus.UNKNOWN_ORDERING
            elif versions.is_older(scheme, current, self.fixed_version):
                status = PackageStatus.VULNERABLE
            else:
                status = PackageStatus.FIXED
            result.append((name, current or "", status))
        return result

    def is_fixed_in(self, version: ImageVersion) -> bool | None:
        """True when no affected package is left vulnerable; None without a fixed version."""
        if not self.fixed_version:
            return None
        statuses = {status for _, _, status in self.status_of(version)}
        if PackageStatus.UNKNOWN_ORDERING in statuses:
            return None
        return PackageStatus.VULNERABLE not in statuses


def _distribution_of(image: Image) -> str:
    if image.is_os or image.base_image is None:
        return image.distribution
    return image.base_image.distribution


class CheckOutcome(models.TextChoices):
    """What one upstream release check decided."""

    REBUILT = "rebuilt", "New serial: rebuild queued"
    UNCHANGED = "unchanged", "Serial unchanged"
    ALREADY_BUILDING = "already_building", "A build is already queued or running"
    NEVER_BUILT = "never_built", "Never built: nothing to compare with"
    FAILED_BEFORE = "failed_before", "The last build of this serial failed"
    ERROR = "error", "Upstream could not be read"


class UpstreamCheck(models.Model):
    """One daily look at an upstream channel: the serial seen and what was done about it."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="upstream_checks")
    arch = models.CharField(max_length=16, choices=Arch.choices)
    checked_at = models.DateTimeField(default=timezone.now, db_index=True)
    serial_seen = models.CharField(max_length=64, blank=True)
    previous_serial = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=32, choices=CheckOutcome.choices)
    message = models.TextField(blank=True)
    build = models.ForeignKey(
        Build, on_delete=models.SET_NULL, null=True, blank=True, related_name="upstream_checks"
    )

    class Meta:
        ordering = ["-checked_at", "-id"]

    def __str__(self) -> str:
        return f"{self.image.label} {self.arch} {self.checked_at:%Y-%m-%d}: {self.outcome}"

    @property
    def rebuilt(self) -> bool:
        return self.outcome == CheckOutcome.REBUILT
