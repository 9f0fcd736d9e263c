"""Choices of the catalogue's models."""

from __future__ import annotations

from django.db import models


class ImageKind(models.TextChoices):
    OS = "os", "OS image"
    INSTANTAPP = "instantapp", "InstantApp"


class Arch(models.TextChoices):
    X86_64 = "x86_64", "x86_64"
    ARM64 = "arm64", "arm64"


class BootMode(models.TextChoices):
    BIOS = "bios", "BIOS"
    UEFI = "uefi", "UEFI"
    BIOS_UEFI = "bios+uefi", "BIOS and UEFI"


class ChecksumFormat(models.TextChoices):
    """The shapes of the checksum files distributions publish (see upstream-images.md)."""

    GNU = "gnu", "GNU (sha256sum/sha512sum: `<hash>  <file>` or `<hash> *<file>`)"
    BSD = "bsd", "BSD (`SHA256 (<file>) = <hash>`)"
    CLEARSIGNED_BSD = "clearsigned-bsd", "BSD inside a PGP clearsigned block (Fedora)"


class ImageState(models.TextChoices):
    ACTIVE = "active", "Active"
    DEPRECATION_SCHEDULED = "deprecation_scheduled", "Deprecation scheduled"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


# Images still offered, hence rebuilt and published in new zones (a deprecated image is hidden
# from the Marketplace and refused for new servers).
LIVE_IMAGE_STATES = (ImageState.ACTIVE, ImageState.DEPRECATION_SCHEDULED)


class VersionState(models.TextChoices):
    BUILT = "built", "Built"
    PUBLISHED = "published", "Published"
    TESTED = "tested", "Tested"
    TEST_FAILED = "test_failed", "Test failed"
    RELEASED = "released", "Released"
    WITHDRAWN = "withdrawn", "Withdrawn"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


class Origin(models.TextChoices):
    """Where a version (and its local images) came from: a build of this factory, or the
    cloud's Marketplace as it stood before the factory (`lifecycle.adoption`). An adopted
    version has no artefact, no manifest and no test runs: it takes part in usage,
    deprecation, notices, retirement and the feed, but is never tested or released again."""

    BUILT = "built", "Built here"
    ADOPTED = "adopted", "Adopted (not built here)"


# Why an adopted version is never tested or released again (the release panel, the matrix).
NOT_BUILT_HERE = (
    "Adopted from the Marketplace (not built here): it has no artefact and no test runs, so "
    "it cannot be tested or released again. Build a new version instead."
)


class StorageType(models.TextChoices):
    """The storage a local image boots from, named as the Marketplace names it.

    Local: an Instance image over an l_ssd snapshot; it boots only on types with local
    storage (DEV1, GP1, ...). Block: an Instance image over a Block Storage (SBS) snapshot;
    it boots on every type with Block Storage, including those without local storage
    (PLAY2, PRO2, POP2, COPARM1)."""

    LOCAL = "instance_local", "Local storage"
    SBS = "instance_sbs", "Block Storage"


def all_storage_types() -> list[str]:
    """The default of an image's storage types: both."""
    return list(StorageType.values)


class LocalImageState(models.TextChoices):
    CREATING = "creating", "Creating"
    AVAILABLE = "available", "Available"
    ERROR = "error", "Error"
    DELETED = "deleted", "Deleted"
    # Retirement could not delete it yet (`error` says why); the daily deprecation run retries.
    DELETE_FAILED = "delete_failed", "Deletion failed"


class DateSource(models.TextChoices):
    NONE = "", "Unknown"
    ENDOFLIFE_DATE = "endoflife.date", "endoflife.date"
    MANAGER = "manager", "Set by a manager"
    DEMO = "demo", "Demo catalogue"


class DeprecationBasis(models.TextChoices):
    """Which upstream date the platform's deprecation follows."""

    SECURITY = "security", "End of standard security support"
    EXTENDED = "extended", "End of extended support"


class StepType(models.TextChoices):
    UPDATE_PACKAGES = "update_packages", "Update all packages"
    INSTALL_PACKAGES = "install_packages", "Install packages"
    REMOVE_PACKAGES = "remove_packages", "Remove packages"
    UPLOAD_FILE = "upload_file", "Upload file"
    WRITE_FILE = "write_file", "Write file"
    DOWNLOAD_FILE = "download_file", "Download file"
    RUN_COMMAND = "run_command", "Run command"
    ENABLE_UNIT = "enable_unit", "Enable systemd unit"
    KERNEL_UPGRADE = "kernel_upgrade", "Kernel upgrade"
    CLOUD_INIT_UPGRADE = "cloud_init_upgrade", "cloud-init upgrade"
    ECOSYSTEM_PACKAGE = "ecosystem_package", "Install provider ecosystem package"
    UEFI_ENABLEMENT = "uefi_enablement", "UEFI enablement"
    FIRSTBOOT_SCRIPT = "firstboot_script", "Firstboot script"
