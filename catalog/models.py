"""What the factory offers: zones, catalogue images, their upstream sources and lifecycle
dates, recipes, the versions builds produce and the per-zone images publishing creates.

The catalogue imports nothing from `builds` or `lifecycle`: those apps point at these rows.
The lifecycle *state* lives here so that catalogue pages need nothing from above.
"""

from __future__ import annotations

import datetime as dt
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from catalog.choices import (
    Arch,
    BootMode,
    ChecksumFormat,
    DateSource,
    DeprecationBasis,
    ImageKind,
    ImageState,
    LocalImageState,
    Origin,
    StepType,
    StorageType,
    VersionState,
    all_storage_types,
)
from catalog.dates import validate_in_range

label_validator = RegexValidator(
    r"^[a-z][a-z0-9_]*$", "Use lower-case letters, digits and underscores (e.g. ubuntu_noble)."
)
version_name_validator = RegexValidator(
    r"^[A-Za-z0-9-]+$", "Scaleway image names allow letters, digits and dashes only."
)


def validate_architectures(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one architecture.")
    unknown = [item for item in value if item not in Arch.values]
    if unknown:
        raise ValidationError(f"Unknown architecture(s): {', '.join(map(str, unknown))}.")


def validate_storage_types(value: object) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Choose at least one storage type.")
    unknown = [item for item in value if item not in StorageType.values]
    if unknown:
        raise ValidationError(f"Unknown storage type(s): {', '.join(map(str, unknown))}.")


def validate_string_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Expected a list of names.")


class Zone(models.Model):
    """An Availability Zone the factory publishes and tests images in."""

    code = models.CharField(
        max_length=16,
        unique=True,
        validators=[RegexValidator(r"^[a-z]{2}-[a-z]{3}-[0-9]$", "A zone looks like fr-par-1.")],
    )
    enabled = models.BooleanField(default=False)
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["code"]
        permissions = [("manage_zones", "Can enable and disable zones")]

    def __str__(self) -> str:
        return self.code

    @property
    def region(self) -> str:
        """fr-par-1 -> fr-par: Scaleway zone codes carry their region."""
        return self.code.rsplit("-", 1)[0]


class Category(models.Model):
    """A Marketplace category (distributions, InstantApps, ...)."""

    name = models.CharField(max_length=64, unique=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class ImageQuerySet(models.QuerySet["Image"]):
    def os_images(self) -> ImageQuerySet:
        return self.filter(kind=ImageKind.OS)

    def instantapps(self) -> ImageQuerySet:
        return self.filter(kind=ImageKind.INSTANTAPP)


class Image(models.Model):
    """A catalogue entry: an OS image or an InstantApp, shaped like a Marketplace image."""

    kind = models.CharField(max_length=16, choices=ImageKind.choices, default=ImageKind.OS)
    label = models.CharField(max_length=64, unique=True, validators=[label_validator])
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    logo = models.URLField(blank=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="images")
    architectures = models.JSONField(default=list, validators=[validate_architectures])
    commercial_types = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text="Compatible commercial types, e.g. DEV1-S, PRO2-XS.",
    )
    storage_types = models.JSONField(
        default=all_storage_types,
        validators=[validate_storage_types],
        help_text=(
            "The storage types each version is published with in every zone: local storage "
            "(instance_local) and Block Storage (instance_sbs, the only one PLAY2, PRO2, POP2 "
            "and COPARM1 types boot from)."
        ),
    )
    # OS images
    distribution = models.CharField(max_length=32, blank=True)
    version = models.CharField(max_length=32, blank=True)
    codename = models.CharField(max_length=32, blank=True)
    boot_mode = models.CharField(max_length=16, choices=BootMode.choices, blank=True)
    # InstantApps
    base_image = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="instantapps",
        limit_choices_to={"kind": ImageKind.OS},
    )
    # Lifecycle state (changed by the lifecycle app's processes)
    state = models.CharField(max_length=32, choices=ImageState.choices, default=ImageState.ACTIVE)
    deprecation_date = models.DateField(null=True, blank=True, validators=[validate_in_range])
    deprecation_reason = models.TextField(blank=True)
    deprecated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    replacement = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replaces"
    )
    grace_period_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Overrides the global grace period after upstream EOL."
    )
    # What went wrong for this image in the latest run of a recurring lifecycle job (the job's
    # name first); shown on its deprecation panel, cleared by the job's next run without it.
    lifecycle_error = models.TextField(blank=True)
    lifecycle_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "label"]
        permissions = [
            ("edit_catalog", "Can edit catalogue entries and recipes"),
            ("import_eol", "Can import upstream end-of-life dates"),
            ("release_image", "Can release and withdraw image versions"),
            ("manage_deprecation", "Can set and move deprecation dates"),
            ("contact_customers", "Can import customers and send notices"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind=ImageKind.OS, base_image__isnull=True)
                | models.Q(kind=ImageKind.INSTANTAPP),
                name="os_image_has_no_base",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.label})"

    def get_absolute_url(self) -> str:
        return reverse("catalog:image", args=[self.label])

    def clean(self) -> None:
        if self.kind == ImageKind.INSTANTAPP and not self.base_image_id:
            raise ValidationError({"base_image": "An InstantApp is built on a base OS image."})
        if self.kind == ImageKind.OS and self.base_image_id:
            raise ValidationError({"base_image": "An OS image has no base image."})

    @property
    def is_os(self) -> bool:
        return self.kind == ImageKind.OS

    @property
    def effective_grace_days(self) -> int:
        if self.grace_period_days is not None:
            return self.grace_period_days
        return settings.DEPRECATION_GRACE_DAYS


class UpstreamSource(models.Model):
    """Where the official cloud image of one architecture is published.

    The channel is the distribution's directory that always holds its latest build; a build
    resolves it to a concrete file and serial at fetch time.
    """

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="sources")
    arch = models.CharField(max_length=16, choices=Arch.choices)
    channel_url = models.URLField(
        max_length=500, help_text="Directory that always holds the latest build, ending with /."
    )
    file_pattern = models.CharField(
        max_length=200,
        help_text="Regular expression matched against the file names listed in the checksum "
        "file; a named group (?P<serial>...) captures the build serial when the name has one.",
    )
    checksum_file = models.CharField(max_length=200)
    checksum_format = models.CharField(max_length=32, choices=ChecksumFormat.choices)
    signature_file = models.CharField(max_length=200, blank=True)
    signing_key = models.TextField(blank=True, help_text="ASCII-armoured OpenPGP public key.")
    serial_pattern = models.CharField(
        max_length=200,
        blank=True,
        help_text="Optional regular expression with a (?P<serial>...) group, searched in the "
        "checksum file when the file name carries no serial (e.g. Debian's latest/).",
    )

    class Meta:
        ordering = ["image", "arch"]
        constraints = [
            models.UniqueConstraint(fields=["image", "arch"], name="one_source_per_arch")
        ]

    def __str__(self) -> str:
        return f"{self.image.label} {self.arch}: {self.channel_url}"

    def clean(self) -> None:
        errors = {}
        for field in ("file_pattern", "serial_pattern"):
            value = getattr(self, field)
            if value:
                try:
                    re.compile(value)
                except re.error as exc:
                    errors[field] = f"Not a valid regular expression: {exc}."
        if self.channel_url and not self.channel_url.endswith("/"):
            errors["channel_url"] = "A channel is a directory: end it with /."
        if self.signature_file and not self.signing_key.strip():
            errors["signing_key"] = "A signature file needs the key that verifies it."
        if errors:
            raise ValidationError(errors)


class UpstreamLifecycle(models.Model):
    """The upstream support dates of an OS image release, and where each came from.

    A date set by a manager is never overwritten by an import.
    """

    image = models.OneToOneField(Image, on_delete=models.CASCADE, related_name="upstream")
    eol_product = models.CharField(
        max_length=64, blank=True, help_text="endoflife.date product id, e.g. ubuntu."
    )
    eol_cycle = models.CharField(max_length=32, blank=True, help_text="Release cycle, e.g. 24.04.")
    rolling = models.BooleanField(default=False, help_text="Rolling releases have no EOL.")
    release_date = models.DateField(null=True, blank=True, validators=[validate_in_range])
    release_date_source = models.CharField(max_length=32, choices=DateSource.choices, blank=True)
    active_support_end = models.DateField(null=True, blank=True, validators=[validate_in_range])
    active_support_end_source = models.CharField(
        max_length=32, choices=DateSource.choices, blank=True
    )
    security_support_end = models.DateField(
        null=True,
        blank=True,
        validators=[validate_in_range],
        help_text="End of standard security support: the upstream EOL.",
    )
    security_support_end_source = models.CharField(
        max_length=32, choices=DateSource.choices, blank=True
    )
    extended_support_end = models.DateField(null=True, blank=True, validators=[validate_in_range])
    extended_support_end_source = models.CharField(
        max_length=32, choices=DateSource.choices, blank=True
    )
    deprecation_basis = models.CharField(
        max_length=16, choices=DeprecationBasis.choices, default=DeprecationBasis.SECURITY
    )
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_import_ok = models.BooleanField(null=True, blank=True)
    last_import_message = models.TextField(blank=True)
    # An import never moves the EOL backwards by itself: the earlier date waits here for a
    # manager to accept or reject it (catalog.eol.accept_proposal / reject_proposal).
    proposed_security_support_end = models.DateField(
        null=True, blank=True, help_text="An earlier EOL upstream announced, waiting for a manager."
    )
    proposed_at = models.DateTimeField(null=True, blank=True)
    rejected_security_support_end = models.DateField(
        null=True, blank=True, help_text="An earlier EOL a manager rejected: not proposed again."
    )

    DATE_FIELDS = (
        "release_date",
        "active_support_end",
        "security_support_end",
        "extended_support_end",
    )

    class Meta:
        ordering = ["image"]

    def __str__(self) -> str:
        return f"Upstream lifecycle of {self.image.label}"

    @property
    def followed_date(self) -> dt.date | None:
        """The upstream date the platform's deprecation follows."""
        if self.rolling:
            return None
        if self.deprecation_basis == DeprecationBasis.EXTENDED and self.extended_support_end:
            return self.extended_support_end
        return self.security_support_end

    def source_of(self, field: str) -> str:
        return getattr(self, f"{field}_source")

    def is_manager_override(self, field: str) -> bool:
        return self.source_of(field) == DateSource.MANAGER


class RecipeStep(models.Model):
    """One customization step of an image's recipe: a type plus validated parameters."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    type = models.CharField(max_length=32, choices=StepType.choices)
    params = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["image", "position", "id"]

    def __str__(self) -> str:
        return f"{self.image.label} #{self.position} {self.get_type_display()}"

    def clean(self) -> None:
        from catalog.recipes import validate_params

        errors = validate_params(self.type, self.params)
        if errors:
            raise ValidationError({"params": [f"{k}: {v}" for k, v in errors.items()]})

    def summary(self) -> str:
        from catalog.recipes import summarize

        return summarize(self.type, self.params)

    def as_dict(self) -> dict:
        return {"type": self.type, "params": self.params, "enabled": self.enabled}


class ImageVersion(models.Model):
    """One image produced by one build, for one architecture; named by date."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="versions")
    arch = models.CharField(max_length=16, choices=Arch.choices, default=Arch.X86_64)
    name = models.CharField(max_length=64, validators=[version_name_validator])
    state = models.CharField(
        max_length=32, choices=VersionState.choices, default=VersionState.BUILT
    )
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    base_version = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="derived_versions"
    )
    upstream_url = models.URLField(max_length=500, blank=True)
    upstream_serial = models.CharField(max_length=64, blank=True)
    upstream_checksum = models.CharField(max_length=200, blank=True)
    artefact_path = models.CharField(max_length=500, blank=True)
    artefact_size = models.BigIntegerField(null=True, blank=True)
    artefact_sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=list, blank=True, help_text="Installed packages.")
    recipe = models.JSONField(default=list, blank=True, help_text="The recipe as executed.")
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.BUILT)

    class Meta:
        ordering = ["image", "-created_at", "-id"]
        get_latest_by = "created_at"
        constraints = [
            models.UniqueConstraint(fields=["image", "arch", "name"], name="unique_version_name")
        ]

    def __str__(self) -> str:
        return f"{self.image.label} {self.name} ({self.arch})"

    def get_absolute_url(self) -> str:
        return reverse("catalog:version", args=[self.image.label, self.arch, self.name])

    @classmethod
    def next_name(cls, image: Image, arch: str, day: dt.date | None = None) -> str:
        """`2026-11-26`, then `2026-11-26-2`, ... for the builds of one day."""
        day = day or timezone.localdate()
        base = day.isoformat()
        taken = set(
            cls.objects.filter(image=image, arch=arch, name__startswith=base).values_list(
                "name", flat=True
            )
        )
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    @property
    def is_adopted(self) -> bool:
        """Adopted from the Marketplace: not built here, so never tested or released again."""
        return self.origin == Origin.ADOPTED

    def package_map(self) -> dict[str, str]:
        return {pkg["name"]: pkg.get("version", "") for pkg in self.manifest or []}

    def previous(self) -> ImageVersion | None:
        return (
            ImageVersion.objects.filter(
                image=self.image, arch=self.arch, created_at__lt=self.created_at
            )
            .order_by("-created_at", "-id")
            .first()
        )


class LocalImage(models.Model):
    """A version's image in one zone: the provider image id customers boot from."""

    version = models.ForeignKey(ImageVersion, on_delete=models.CASCADE, related_name="local_images")
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="local_images")
    storage_type = models.CharField(
        max_length=16, choices=StorageType.choices, default=StorageType.LOCAL
    )
    provider_image_id = models.CharField(max_length=64, blank=True)
    snapshot_id = models.CharField(max_length=64, blank=True)
    state = models.CharField(
        max_length=16, choices=LocalImageState.choices, default=LocalImageState.CREATING
    )
    error = models.TextField(blank=True)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.BUILT)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["version", "zone", "storage_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "zone", "storage_type"],
                name="one_local_image_per_zone_and_storage",
            )
        ]

    def __str__(self) -> str:
        return f"{self.version} in {self.zone} ({self.get_storage_type_display()})"

    @property
    def arch(self) -> str:
        return self.version.arch


class AuditEntry(models.Model):
    """Who changed what, when, with the values before and after."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64)
    image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_entries"
    )
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=255, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name or 'system'} {self.action}"

    def changes(self) -> list[tuple[str, object, object]]:
        """(field, before, after) for each field whose value changed."""
        before = self.before if isinstance(self.before, dict) else {}
        after = self.after if isinstance(self.after, dict) else {}
        keys = sorted(set(before) | set(after))
        return [(k, before.get(k), after.get(k)) for k in keys if before.get(k) != after.get(k)]
