"""The demo catalogue: zones, categories, OS images, InstantApps, their sources and recipes.

The data is plain Python (one dict per image) so that it reads like the catalogue a manager
would see; the scripts and files the InstantApps write are kept as they are in
catalog/demo_data/. `load_demo` creates or updates the catalogue idempotently and never
overwrites what a manager changed afterwards:

- zones: created with `enabled` only on the first load (enabling a zone is a manager's act);
- images, sources: updated to the demo values by natural key (label; image + arch), except
  that signature files and signing keys are only written when the demo gives one, so keys
  filled in later are never wiped;
- storage types (local storage and Block Storage; both unless an image's dict says
  `"storage_types": [...]`): set when the image is created, then left to the managers;
- recipes: written only for an image that has no steps yet;
- lifecycle dates: written with source "demo" only where the stored source is empty or
  "demo"; a date from endoflife.date or set by a manager is kept.

Upstream facts (channel URLs, file names, checksum formats, build serials, endoflife.date ids
and dates) come from the shared reference notes, upstream-images.md, sections 0-9.

Signatures. The loader only stores an ASCII-armoured key it really has, and this module has
none, so `signature_file` and `signing_key` are left blank everywhere. To be filled with the
published keys (fingerprints):
- Ubuntu (all releases): `SHA256SUMS.gpg`, detached, "UEC Image Automatic Signing Key
  <cdimage@ubuntu.com>" D2EB 4462 6FDD C30B 513D 5BB7 1A5D 6C4C 7DB8 7C81 (shipped in
  /usr/share/keyrings/ubuntu-cloudimage-keyring.gpg).
- AlmaLinux 9: `CHECKSUM.asc`, detached, BF18 AC28 7617 8908 D6E7 1267 D36C B86C B86B 3716.
- AlmaLinux 8: `CHECKSUM.asc`, detached; the key file holds 5E9B 8F56 17B5 066C E920 57C3 488F
  CF7C 3ABB 34F8 (expired 2024-01-12) and BC5E DDCA DF50 2C07 7F15 8288 2AE8 1E8A CED7 258B;
  which one signs the current cloud CHECKSUM is unverified: import both.
- Fedora 44: the CHECKSUM file itself is clearsigned (format clearsigned-bsd, no separate
  signature file), primary key 36F6 12DC F27F 7D1A 48A8 35E4 DBFC F71C 6D9F 90A6, from
  https://fedoraproject.org/fedora.gpg.
- Rocky Linux 8: the mirror has signed checksums (`CHECKSUM.sig`? unverified), key
  7051 C470 A929 F454 CEBE 37B7 15AF 5DAC 6D74 5A60. Rocky Linux 9: no signature on the
  mirror (the signed git repo rocky-linux/checksums is the reference), key 21CB 256A E16F C54C
  6E65 2949 702D 426D 350D 275D.
- Debian and CentOS Stream cloud images publish no signature: trust rests on HTTPS.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

from django.db import models, transaction

from catalog import audit
from catalog.choices import (
    Arch,
    BootMode,
    ChecksumFormat,
    DateSource,
    DeprecationBasis,
    ImageKind,
    all_storage_types,
)
from catalog.models import Category, Image, RecipeStep, UpstreamLifecycle, UpstreamSource, Zone
from catalog.recipes import clean_params

DEFAULT_DEMO_UPSTREAM_URL = "http://127.0.0.1:8081/debian-12/"

# --- Zones and categories -------------------------------------------------------------------------

ZONES = [
    "fr-par-1",
    "fr-par-2",
    "fr-par-3",
    "nl-ams-1",
    "nl-ams-2",
    "nl-ams-3",
    "pl-waw-1",
    "pl-waw-2",
    "pl-waw-3",
]
# Enabled on the first load only; later loads leave `enabled` to the managers.
ZONES_ENABLED_ON_FIRST_LOAD = {"fr-par-1", "fr-par-2"}

DISTRIBUTIONS_CATEGORY = "Distributions"
INSTANTAPPS_CATEGORY = "InstantApps"
CATEGORIES = {
    DISTRIBUTIONS_CATEGORY: "Official distribution cloud images, minimally customised.",
    INSTANTAPPS_CATEGORY: "Applications installed and configured on top of an OS image.",
}

# --- Commercial types -----------------------------------------------------------------------------

X86_64_TYPES = [
    "DEV1-S",
    "DEV1-M",
    "DEV1-L",
    "DEV1-XL",
    "GP1-XS",
    "GP1-S",
    "PRO2-XXS",
    "PRO2-XS",
    "PRO2-S",
]
ARM64_TYPES = ["COPARM1-2C-8G", "COPARM1-4C-16G"]
ALL_TYPES = X86_64_TYPES + ARM64_TYPES
# GitLab needs at least 4 GB of RAM and is uncomfortable below 8 GB: no DEV1-S (2 GB) or DEV1-M.
GITLAB_TYPES = [t for t in ALL_TYPES if t not in ("DEV1-S", "DEV1-M")]

BOTH_ARCHES = [Arch.X86_64.value, Arch.ARM64.value]


def _icon(slug: str) -> str:
    """The simple-icons CDN address endoflife.date uses for product logos."""
    return f"https://cdn.jsdelivr.net/npm/simple-icons/icons/{slug}.svg"


# --- OS recipes -----------------------------------------------------------------------------------
# PLACEHOLDER provider repository: `.invalid` never resolves (RFC 2606), so a build fails loudly
# at this step until the real repository (and its keyring) replaces it. It is deliberately not
# read from settings: the demo must load the same everywhere.
PROVIDER_APT_REPOSITORY = (
    "deb [signed-by=/usr/share/keyrings/scaleway-ecosystem.gpg] "
    "https://packages.example.invalid/scaleway-ecosystem/apt stable main"
)
PROVIDER_EL_REPOSITORY = (
    "https://packages.example.invalid/scaleway-ecosystem/rpm/el$releasever/$basearch/"
)
PROVIDER_FEDORA_REPOSITORY = (
    "https://packages.example.invalid/scaleway-ecosystem/rpm/fedora$releasever/$basearch/"
)

# Every OS recipe updates the packages first (a refresh must ship current packages), then
# installs the provider package, which carries most provider customisations. No current image
# boots BIOS-only (for CentOS Stream the UEFI-capable `GenericCloud-x86_64-<N>` flavour is
# chosen below), so none needs `uefi_enablement`; an image built from a BIOS-only upstream
# (like CentOS 8 was, or the `GenericCloud-<N>` x86_64 flavour) would add it after these.
APT_OS_RECIPE = [
    {"type": "update_packages", "params": {}},
    {
        "type": "ecosystem_package",
        "params": {"package": "scaleway-ecosystem", "repository": PROVIDER_APT_REPOSITORY},
    },
]
EL_OS_RECIPE = [
    {"type": "update_packages", "params": {}},
    {
        "type": "ecosystem_package",
        "params": {"package": "scaleway-ecosystem", "repository": PROVIDER_EL_REPOSITORY},
    },
]
FEDORA_OS_RECIPE = [
    {"type": "update_packages", "params": {}},
    {
        "type": "ecosystem_package",
        "params": {"package": "scaleway-ecosystem", "repository": PROVIDER_FEDORA_REPOSITORY},
    },
]

# --- OS images ------------------------------------------------------------------------------------
# Sources: `channel_url` is the directory that always holds the newest build. `file_pattern` is
# matched with re.fullmatch against the names listed in `checksum_file`; its `serial` group
# captures the build serial when the name carries one. Ubuntu's release/ and Debian's latest/
# list unversioned names and no serial in the checksum file, so their serial cannot be read
# from the checksum file: `serial_pattern` stays blank for them.
# Dates: endoflife.date, snapshot 2026-08-22 (reference section 9). Ubuntu: eoas = end of
# hardware & maintenance, eol = end of standard security support, eoes = end of ESM.
# Debian: eol = end of security support, eoes = end of LTS. RHEL family: eoas = end of active
# support, eol = end of security support.

OS_IMAGES: list[dict[str, Any]] = [
    {
        "label": "ubuntu_focal",
        "name": "Ubuntu 20.04 Focal Fossa",
        "description": "Ubuntu 20.04 LTS server cloud image. Standard support ended on 2025-05-31.",
        "logo": _icon("ubuntu"),
        "distribution": "Ubuntu",
        "version": "20.04",
        "codename": "Focal Fossa",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://cloud-images.ubuntu.com/releases/focal/release/",
                "file_pattern": r"ubuntu-20\.04-server-cloudimg-amd64\.img",
                "checksum_file": "SHA256SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
            "arm64": {
                "channel_url": "https://cloud-images.ubuntu.com/releases/focal/release/",
                "file_pattern": r"ubuntu-20\.04-server-cloudimg-arm64\.img",
                "checksum_file": "SHA256SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
        },
        "lifecycle": {
            "eol_product": "ubuntu",
            "eol_cycle": "20.04",
            "release_date": "2020-04-23",
            "active_support_end": "2022-10-01",
            "security_support_end": "2025-05-31",
            "extended_support_end": "2030-04-02",
        },
        "recipe": APT_OS_RECIPE,
    },
    {
        "label": "ubuntu_jammy",
        "name": "Ubuntu 22.04 Jammy Jellyfish",
        "description": "Ubuntu 22.04 LTS server cloud image.",
        "logo": _icon("ubuntu"),
        "distribution": "Ubuntu",
        "version": "22.04",
        "codename": "Jammy Jellyfish",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://cloud-images.ubuntu.com/releases/jammy/release/",
                "file_pattern": r"ubuntu-22\.04-server-cloudimg-amd64\.img",
                "checksum_file": "SHA256SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
            "arm64": {
                "channel_url": "https://cloud-images.ubuntu.com/releases/jammy/release/",
                "file_pattern": r"ubuntu-22\.04-server-cloudimg-arm64\.img",
                "checksum_file": "SHA256SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
        },
        "lifecycle": {
            "eol_product": "ubuntu",
            "eol_cycle": "22.04",
            "release_date": "2022-04-21",
            "active_support_end": "2024-09-30",
            "security_support_end": "2027-04-01",
            "extended_support_end": "2032-04-09",
        },
        "recipe": APT_OS_RECIPE,
    },
    {
        "label": "ubuntu_noble",
        "name": "Ubuntu 24.04 Noble Numbat",
        "description": "Ubuntu 24.04 LTS server cloud image; the base of the InstantApps.",
        "logo": _icon("ubuntu"),
        "distribution": "Ubuntu",
        "version": "24.04",
        "codename": "Noble Numbat",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://cloud-images.ubuntu.com/releases/noble/release/",
                "file_pattern": r"ubuntu-24\.04-server-cloudimg-amd64\.img",
                "checksum_file": "SHA256SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
            "arm64": {
                "channel_url": "https://cloud-images.ubuntu.com/releases/noble/release/",
                "file_pattern": r"ubuntu-24\.04-server-cloudimg-arm64\.img",
                "checksum_file": "SHA256SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
        },
        "lifecycle": {
            "eol_product": "ubuntu",
            "eol_cycle": "24.04",
            "release_date": "2024-04-25",
            "active_support_end": "2029-05-31",
            "security_support_end": "2029-05-31",
            "extended_support_end": "2036-05-31",
        },
        "recipe": APT_OS_RECIPE,
    },
    {
        "label": "debian_bullseye",
        "name": "Debian 11 Bullseye",
        "description": "Debian 11 genericcloud image. Security support ended on 2024-08-14.",
        "logo": _icon("debian"),
        "distribution": "Debian",
        "version": "11",
        "codename": "Bullseye",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://cloud.debian.org/images/cloud/bullseye/latest/",
                "file_pattern": r"debian-11-genericcloud-amd64\.qcow2",
                "checksum_file": "SHA512SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
            "arm64": {
                "channel_url": "https://cloud.debian.org/images/cloud/bullseye/latest/",
                "file_pattern": r"debian-11-genericcloud-arm64\.qcow2",
                "checksum_file": "SHA512SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
        },
        "lifecycle": {
            "eol_product": "debian",
            "eol_cycle": "11",
            "release_date": "2021-08-14",
            "security_support_end": "2024-08-14",
            "extended_support_end": "2026-08-31",
        },
        "recipe": APT_OS_RECIPE,
    },
    {
        "label": "debian_bookworm",
        "name": "Debian 12 Bookworm",
        "description": "Debian 12 genericcloud image. Security support ended on 2026-07-11.",
        "logo": _icon("debian"),
        "distribution": "Debian",
        "version": "12",
        "codename": "Bookworm",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://cloud.debian.org/images/cloud/bookworm/latest/",
                "file_pattern": r"debian-12-genericcloud-amd64\.qcow2",
                "checksum_file": "SHA512SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
            "arm64": {
                "channel_url": "https://cloud.debian.org/images/cloud/bookworm/latest/",
                "file_pattern": r"debian-12-genericcloud-arm64\.qcow2",
                "checksum_file": "SHA512SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
        },
        "lifecycle": {
            "eol_product": "debian",
            "eol_cycle": "12",
            "release_date": "2023-06-10",
            "security_support_end": "2026-07-11",
            "extended_support_end": "2028-06-30",
        },
        "recipe": APT_OS_RECIPE,
    },
    {
        "label": "debian_trixie",
        "name": "Debian 13 Trixie",
        "description": "Debian 13 genericcloud image.",
        "logo": _icon("debian"),
        "distribution": "Debian",
        "version": "13",
        "codename": "Trixie",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://cloud.debian.org/images/cloud/trixie/latest/",
                "file_pattern": r"debian-13-genericcloud-amd64\.qcow2",
                "checksum_file": "SHA512SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
            "arm64": {
                "channel_url": "https://cloud.debian.org/images/cloud/trixie/latest/",
                "file_pattern": r"debian-13-genericcloud-arm64\.qcow2",
                "checksum_file": "SHA512SUMS",
                "checksum_format": ChecksumFormat.GNU,
            },
        },
        "lifecycle": {
            "eol_product": "debian",
            "eol_cycle": "13",
            "release_date": "2025-08-09",
            "security_support_end": "2028-08-09",
            "extended_support_end": "2030-06-30",
        },
        "recipe": APT_OS_RECIPE,
    },
    {
        "label": "rocky_8",
        "name": "Rocky Linux 8",
        "description": "Rocky Linux 8 GenericCloud (Base) image.",
        "logo": _icon("rockylinux"),
        "distribution": "Rocky Linux",
        "version": "8",
        "codename": "",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        # <maj>/ is the symlink to the newest minor release; serial = <maj.min>-YYYYMMDD.N.
        "sources": {
            "x86_64": {
                "channel_url": "https://dl.rockylinux.org/pub/rocky/8/images/x86_64/",
                "file_pattern": (
                    r"Rocky-8-GenericCloud-Base-(?P<serial>8\.\d+-\d{8}\.\d+)\.x86_64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.BSD,
            },
            "arm64": {
                "channel_url": "https://dl.rockylinux.org/pub/rocky/8/images/aarch64/",
                "file_pattern": (
                    r"Rocky-8-GenericCloud-Base-(?P<serial>8\.\d+-\d{8}\.\d+)\.aarch64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.BSD,
            },
        },
        "lifecycle": {
            "eol_product": "rocky-linux",
            "eol_cycle": "8",
            "release_date": "2021-05-01",
            "active_support_end": "2024-05-31",
            "security_support_end": "2029-05-31",
        },
        "recipe": EL_OS_RECIPE,
    },
    {
        "label": "rocky_9",
        "name": "Rocky Linux 9",
        "description": "Rocky Linux 9 GenericCloud (Base) image.",
        "logo": _icon("rockylinux"),
        "distribution": "Rocky Linux",
        "version": "9",
        "codename": "",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://dl.rockylinux.org/pub/rocky/9/images/x86_64/",
                "file_pattern": (
                    r"Rocky-9-GenericCloud-Base-(?P<serial>9\.\d+-\d{8}\.\d+)\.x86_64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.BSD,
            },
            "arm64": {
                "channel_url": "https://dl.rockylinux.org/pub/rocky/9/images/aarch64/",
                "file_pattern": (
                    r"Rocky-9-GenericCloud-Base-(?P<serial>9\.\d+-\d{8}\.\d+)\.aarch64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.BSD,
            },
        },
        "lifecycle": {
            "eol_product": "rocky-linux",
            "eol_cycle": "9",
            "release_date": "2022-07-14",
            "active_support_end": "2027-05-31",
            "security_support_end": "2032-05-31",
        },
        "recipe": EL_OS_RECIPE,
    },
    {
        "label": "almalinux_8",
        "name": "AlmaLinux 8",
        "description": "AlmaLinux OS 8 GenericCloud image.",
        "logo": _icon("almalinux"),
        "distribution": "AlmaLinux",
        "version": "8",
        "codename": "",
        # BIOS and UEFI on x86_64 since 8.9-20231128 (AlmaLinux cloud changelog).
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        # Serial = <maj.min>-YYYYMMDD, with an optional .N respin (as lima's regex allows).
        "sources": {
            "x86_64": {
                "channel_url": "https://repo.almalinux.org/almalinux/8/cloud/x86_64/images/",
                "file_pattern": (
                    r"AlmaLinux-8-GenericCloud-(?P<serial>8\.\d+-\d{8}(?:\.\d+)?)\.x86_64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.GNU,
            },
            "arm64": {
                "channel_url": "https://repo.almalinux.org/almalinux/8/cloud/aarch64/images/",
                "file_pattern": (
                    r"AlmaLinux-8-GenericCloud-(?P<serial>8\.\d+-\d{8}(?:\.\d+)?)\.aarch64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.GNU,
            },
        },
        "lifecycle": {
            "eol_product": "almalinux",
            "eol_cycle": "8",
            "release_date": "2021-03-30",
            "active_support_end": "2024-05-31",
            "security_support_end": "2029-05-31",
        },
        "recipe": EL_OS_RECIPE,
    },
    {
        "label": "almalinux_9",
        "name": "AlmaLinux 9",
        "description": "AlmaLinux OS 9 GenericCloud image.",
        "logo": _icon("almalinux"),
        "distribution": "AlmaLinux",
        "version": "9",
        "codename": "",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://repo.almalinux.org/almalinux/9/cloud/x86_64/images/",
                "file_pattern": (
                    r"AlmaLinux-9-GenericCloud-(?P<serial>9\.\d+-\d{8}(?:\.\d+)?)\.x86_64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.GNU,
            },
            "arm64": {
                "channel_url": "https://repo.almalinux.org/almalinux/9/cloud/aarch64/images/",
                "file_pattern": (
                    r"AlmaLinux-9-GenericCloud-(?P<serial>9\.\d+-\d{8}(?:\.\d+)?)\.aarch64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.GNU,
            },
        },
        "lifecycle": {
            "eol_product": "almalinux",
            "eol_cycle": "9",
            "release_date": "2022-05-26",
            "active_support_end": "2027-05-31",
            "security_support_end": "2032-05-31",
        },
        "recipe": EL_OS_RECIPE,
    },
    {
        "label": "centos_stream_9",
        "name": "CentOS Stream 9",
        "description": "CentOS Stream 9 GenericCloud image.",
        "logo": _icon("centos"),
        "distribution": "CentOS Stream",
        "version": "9",
        "codename": "",
        # x86_64 uses the `GenericCloud-x86_64-9` flavour (GPT with biosboot + ESP: BIOS and
        # UEFI), not the BIOS-only `GenericCloud-9` one listed in the same CHECKSUM; aarch64
        # has only `GenericCloud-9` (UEFI). Serial = compose YYYYMMDD.N.
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://cloud.centos.org/centos/9-stream/x86_64/images/",
                "file_pattern": (
                    r"CentOS-Stream-GenericCloud-x86_64-9-(?P<serial>\d{8}\.\d+)\.x86_64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.BSD,
            },
            "arm64": {
                "channel_url": "https://cloud.centos.org/centos/9-stream/aarch64/images/",
                "file_pattern": (
                    r"CentOS-Stream-GenericCloud-9-(?P<serial>\d{8}\.\d+)\.aarch64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.BSD,
            },
        },
        "lifecycle": {
            "eol_product": "centos-stream",
            "eol_cycle": "9",
            "release_date": "2021-09-15",
            "active_support_end": "2027-05-31",
            "security_support_end": "2027-05-31",
        },
        "recipe": EL_OS_RECIPE,
    },
    {
        "label": "centos_stream_10",
        "name": "CentOS Stream 10",
        "description": "CentOS Stream 10 GenericCloud image.",
        "logo": _icon("centos"),
        "distribution": "CentOS Stream",
        "version": "10",
        "codename": "",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "https://cloud.centos.org/centos/10-stream/x86_64/images/",
                "file_pattern": (
                    r"CentOS-Stream-GenericCloud-x86_64-10-(?P<serial>\d{8}\.\d+)\.x86_64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.BSD,
            },
            "arm64": {
                "channel_url": "https://cloud.centos.org/centos/10-stream/aarch64/images/",
                "file_pattern": (
                    r"CentOS-Stream-GenericCloud-10-(?P<serial>\d{8}\.\d+)\.aarch64\.qcow2"
                ),
                "checksum_file": "CHECKSUM",
                "checksum_format": ChecksumFormat.BSD,
            },
        },
        "lifecycle": {
            "eol_product": "centos-stream",
            "eol_cycle": "10",
            "release_date": "2024-12-12",
            "active_support_end": "2030-05-31",
            "security_support_end": "2030-05-31",
        },
        "recipe": EL_OS_RECIPE,
    },
    {
        # Fedora 44 is the current release on 2026-11-26 (43 reaches EOL on 2026-12-09).
        "label": "fedora_44",
        "name": "Fedora 44",
        "description": "Fedora Cloud Base Generic 44 image.",
        "logo": _icon("fedora"),
        "distribution": "Fedora",
        "version": "44",
        "codename": "",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        # releases/44 holds the GA compose only (44-1.7), so the checksum file name, which
        # carries the compose id, is fixed for the life of the release. The `UEFI-UKI`
        # variant (UEFI only) is listed in the same file and must not match.
        "sources": {
            "x86_64": {
                "channel_url": (
                    "https://download.fedoraproject.org/pub/fedora/linux/releases/44/"
                    "Cloud/x86_64/images/"
                ),
                "file_pattern": (
                    r"Fedora-Cloud-Base-Generic-(?P<serial>44-\d+\.\d+)\.x86_64\.qcow2"
                ),
                "checksum_file": "Fedora-Cloud-44-1.7-x86_64-CHECKSUM",
                "checksum_format": ChecksumFormat.CLEARSIGNED_BSD,
            },
            "arm64": {
                "channel_url": (
                    "https://download.fedoraproject.org/pub/fedora/linux/releases/44/"
                    "Cloud/aarch64/images/"
                ),
                "file_pattern": (
                    r"Fedora-Cloud-Base-Generic-(?P<serial>44-\d+\.\d+)\.aarch64\.qcow2"
                ),
                "checksum_file": "Fedora-Cloud-44-1.7-aarch64-CHECKSUM",
                "checksum_format": ChecksumFormat.CLEARSIGNED_BSD,
            },
        },
        "lifecycle": {
            "eol_product": "fedora",
            "eol_cycle": "44",
            "release_date": "2026-04-28",
            "security_support_end": "2027-06-02",
        },
        "recipe": FEDORA_OS_RECIPE,
    },
    {
        # Served by the project's local HTTP server, so that a full build runs offline and
        # fast. Its channel is the `demo_upstream_url` given to `load_demo`.
        "label": "debian_bookworm_local",
        "name": "Debian 12 (local demo)",
        "description": "A small Debian 12 fixture image served locally, for demonstrations.",
        "logo": _icon("debian"),
        "distribution": "Debian",
        "version": "12",
        "codename": "Bookworm",
        "boot_mode": BootMode.BIOS_UEFI,
        "architectures": [Arch.X86_64.value],
        "commercial_types": X86_64_TYPES,
        "sources": {
            "x86_64": {
                "channel_url": "<demo_upstream_url>",
                "file_pattern": r"debian-12-local-amd64\.qcow2",
                "checksum_file": "SHA256SUMS",
                "checksum_format": ChecksumFormat.GNU,
                # The server writes `# serial: 20261126-1` on the first line of SHA256SUMS.
                # The inline (?m) makes ^ and $ match at line ends without the caller
                # having to pass re.MULTILINE.
                "serial_pattern": r"(?m)^# serial: (?P<serial>\S+)$",
            },
        },
        # Debian 12's dates.
        "lifecycle": {
            "eol_product": "debian",
            "eol_cycle": "12",
            "release_date": "2023-06-10",
            "security_support_end": "2026-07-11",
            "extended_support_end": "2028-06-30",
        },
        # Short on purpose. The provider package is the project's stand-in .deb, which
        # `make run` writes into FACTORY_FILES_DIR (the real one is not public).
        "recipe": [
            {"type": "update_packages", "params": {}},
            {
                "type": "ecosystem_package",
                "params": {
                    "package": "scaleway-ecosystem",
                    "file": "scaleway-ecosystem_0.1.0-1_all.deb",
                },
            },
            {"type": "install_packages", "params": {"packages": ["curl"]}},
            {
                "type": "write_file",
                "params": {
                    "path": "/etc/motd",
                    "content": "Debian 12 (local demo), built by the image factory.\n",
                    "mode": "0644",
                },
            },
            {"type": "enable_unit", "params": {"unit": "ssh.service"}},
        ],
    },
]

# The placeholder replaced by `demo_upstream_url` in the local image's source.
LOCAL_CHANNEL = "<demo_upstream_url>"

# --- InstantApps ----------------------------------------------------------------------------------
# They start from the Ubuntu 24.04 base build (whose recipe already installed the provider
# package) and add their own steps. Each still begins with update_packages, since the base
# version may be weeks old. Anything secret or per-customer (database passwords, keys,
# certificates) is created by a firstboot script, never in the image. Ubuntu 24.04 ships
# PHP 8.3: the php8.3-* unit and paths below follow the base image's PHP version.
#
# The scripts and configuration files they write live in catalog/demo_data/, one folder per
# InstantApp, and are read as they are (see `_data_file`).

DATA_FOLDER = "demo_data"
# A line of a data file that stands for the whole of another data file (a shared snippet).
_INCLUDE = re.compile(r"^# include: (?P<name>[\w./-]+)\n", re.MULTILINE)


def _data_file(name: str) -> str:
    """The text of catalog/demo_data/<name>, with each `# include: <other>` line replaced by
    the text of catalog/demo_data/<other> (snippets shared by several scripts)."""
    text = resources.files("catalog").joinpath(DATA_FOLDER, name).read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda match: _data_file(match["name"]), text)


WORDPRESS_NGINX_SITE = _data_file("wordpress/nginx-site.conf")
# wordpress.org publishes latest.tar.gz.sha1 and .md5 (no SHA-256), and latest.tar.gz changes
# with every release, so a download_file step (which pins a SHA-256) cannot be used: this
# command downloads the archive and checks it against the checksum published at build time.
WORDPRESS_DOWNLOAD = _data_file("wordpress/download.sh")
WORDPRESS_DATABASE_INIT = _data_file("wordpress/database-init.sh")
WORDPRESS_BOOT_CONFIG = _data_file("wordpress/boot-config.sh")
WORDPRESS_PHP_INI = _data_file("wordpress/php.ini")

# The provider's OpenVPN scripts, written into the image. They hold no key: the set-up script
# runs at the first boot and creates this instance's own CA, server key and configuration.
OPENVPN_SETUP_SCRIPT = _data_file("openvpn/openvpn-instantapp-setup.sh")
OPENVPN_ADD_CLIENT_SCRIPT = _data_file("openvpn/openvpn-add-client.sh")
OPENVPN_NAT_UNIT = _data_file("openvpn/openvpn-nat.service")
OPENVPN_FIRSTBOOT = _data_file("openvpn/firstboot.sh")

# Docker CE from Docker's own apt repository, with its signing key checked against Docker's
# published fingerprint before apt trusts it.
DOCKER_REPOSITORY_AND_INSTALL = _data_file("docker/repository-and-install.sh")

# GitLab CE comes from GitLab's apt repository (the Ubuntu archive has none). The package's
# automatic reconfigure is skipped in the image: it needs the instance's address and creates
# per-instance secrets and the initial root password, so it runs at the first boot.
GITLAB_REPOSITORY_AND_INSTALL = _data_file("gitlab/repository-and-install.sh")
GITLAB_FIRSTBOOT = _data_file("gitlab/firstboot.sh")

# Nextcloud publishes latest.tar.bz2.sha256 next to the archive; both change with each
# release, so the checksum is fetched and checked at build time instead of pinned here.
NEXTCLOUD_DOWNLOAD = _data_file("nextcloud/download.sh")
NEXTCLOUD_APACHE_SITE = _data_file("nextcloud/apache-site.conf")
NEXTCLOUD_PHP_INI = _data_file("nextcloud/php.ini")
NEXTCLOUD_FIRSTBOOT = _data_file("nextcloud/firstboot.sh")

INSTANTAPPS: list[dict[str, Any]] = [
    {
        "label": "wordpress",
        "name": "WordPress",
        "description": "WordPress on nginx, PHP-FPM and MariaDB; finish the set-up in a browser.",
        "logo": _icon("wordpress"),
        "base_image": "ubuntu_noble",
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "recipe": [
            {"type": "update_packages", "params": {}},
            {
                "type": "install_packages",
                "params": {
                    "packages": [
                        "nginx",
                        "php-fpm",
                        "php-mysql",
                        "php-curl",
                        "php-gd",
                        "php-intl",
                        "php-mbstring",
                        "php-xml",
                        "php-zip",
                        "php-imagick",
                        "mariadb-server",
                        "curl",
                    ]
                },
            },
            {"type": "run_command", "params": {"command": WORDPRESS_DOWNLOAD, "timeout": 600}},
            {
                "type": "write_file",
                "params": {
                    "path": "/etc/nginx/sites-available/default",
                    "content": WORDPRESS_NGINX_SITE,
                    "mode": "0644",
                },
            },
            {
                "type": "write_file",
                "params": {
                    "path": "/etc/php/8.3/fpm/conf.d/90-wordpress.ini",
                    "content": WORDPRESS_PHP_INI,
                    "mode": "0644",
                },
            },
            {"type": "enable_unit", "params": {"unit": "mariadb.service"}},
            {"type": "enable_unit", "params": {"unit": "php8.3-fpm.service"}},
            {"type": "enable_unit", "params": {"unit": "nginx.service"}},
            {"type": "firstboot_script", "params": {"script": WORDPRESS_DATABASE_INIT}},
            {"type": "firstboot_script", "params": {"script": WORDPRESS_BOOT_CONFIG}},
        ],
    },
    {
        "label": "openvpn",
        "name": "OpenVPN",
        "description": "An OpenVPN server with its own CA; a first client profile is in /root.",
        "logo": _icon("openvpn"),
        "base_image": "ubuntu_noble",
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "recipe": [
            {"type": "update_packages", "params": {}},
            {
                "type": "install_packages",
                "params": {"packages": ["openvpn", "easy-rsa", "iptables", "curl"]},
            },
            {
                "type": "write_file",
                "params": {
                    "path": "/usr/local/sbin/openvpn-instantapp-setup",
                    "content": OPENVPN_SETUP_SCRIPT,
                    "mode": "0755",
                },
            },
            {
                "type": "write_file",
                "params": {
                    "path": "/usr/local/sbin/openvpn-add-client",
                    "content": OPENVPN_ADD_CLIENT_SCRIPT,
                    "mode": "0755",
                },
            },
            {
                "type": "write_file",
                "params": {
                    "path": "/etc/sysctl.d/60-openvpn-forward.conf",
                    "content": "net.ipv4.ip_forward = 1\n",
                    "mode": "0644",
                },
            },
            {
                "type": "write_file",
                "params": {
                    "path": "/etc/systemd/system/openvpn-nat.service",
                    "content": OPENVPN_NAT_UNIT,
                    "mode": "0644",
                },
            },
            {"type": "enable_unit", "params": {"unit": "openvpn-nat.service"}},
            {"type": "firstboot_script", "params": {"script": OPENVPN_FIRSTBOOT}},
        ],
    },
    {
        "label": "docker",
        "name": "Docker",
        "description": "Docker Engine, Compose and Buildx, from Docker's own apt repository.",
        "logo": _icon("docker"),
        "base_image": "ubuntu_noble",
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "recipe": [
            {"type": "update_packages", "params": {}},
            {
                "type": "install_packages",
                "params": {"packages": ["ca-certificates", "curl", "gnupg"]},
            },
            {
                "type": "run_command",
                "params": {"command": DOCKER_REPOSITORY_AND_INSTALL, "timeout": 900},
            },
            {"type": "enable_unit", "params": {"unit": "containerd.service"}},
            {"type": "enable_unit", "params": {"unit": "docker.service"}},
        ],
    },
    {
        "label": "gitlab",
        "name": "GitLab CE",
        "description": "GitLab Community Edition (Omnibus), configured at the first boot.",
        "logo": _icon("gitlab"),
        "base_image": "ubuntu_noble",
        "architectures": BOTH_ARCHES,
        "commercial_types": GITLAB_TYPES,
        "recipe": [
            {"type": "update_packages", "params": {}},
            {
                "type": "install_packages",
                "params": {
                    "packages": [
                        "curl",
                        "openssh-server",
                        "ca-certificates",
                        "tzdata",
                        "perl",
                        "gnupg",
                    ]
                },
            },
            {
                "type": "run_command",
                "params": {"command": GITLAB_REPOSITORY_AND_INSTALL, "timeout": 3600},
            },
            {"type": "firstboot_script", "params": {"script": GITLAB_FIRSTBOOT}},
        ],
    },
    {
        "label": "nextcloud",
        "name": "Nextcloud",
        "description": "Nextcloud on Apache, PHP and MariaDB; admin credentials are in /root.",
        "logo": _icon("nextcloud"),
        "base_image": "ubuntu_noble",
        "architectures": BOTH_ARCHES,
        "commercial_types": ALL_TYPES,
        "recipe": [
            {"type": "update_packages", "params": {}},
            {
                "type": "install_packages",
                "params": {
                    "packages": [
                        "apache2",
                        "libapache2-mod-php",
                        "php-mysql",
                        "php-gd",
                        "php-curl",
                        "php-mbstring",
                        "php-intl",
                        "php-xml",
                        "php-zip",
                        "php-bcmath",
                        "php-gmp",
                        "php-imagick",
                        "php-apcu",
                        "mariadb-server",
                        "bzip2",
                        "curl",
                    ]
                },
            },
            {"type": "run_command", "params": {"command": NEXTCLOUD_DOWNLOAD, "timeout": 900}},
            {
                "type": "write_file",
                "params": {
                    "path": "/etc/apache2/sites-available/000-default.conf",
                    "content": NEXTCLOUD_APACHE_SITE,
                    "mode": "0644",
                },
            },
            {
                "type": "write_file",
                "params": {
                    "path": "/etc/php/8.3/apache2/conf.d/90-nextcloud.ini",
                    "content": NEXTCLOUD_PHP_INI,
                    "mode": "0644",
                },
            },
            {"type": "run_command", "params": {"command": "a2enmod rewrite headers env dir mime"}},
            {"type": "enable_unit", "params": {"unit": "mariadb.service"}},
            {"type": "enable_unit", "params": {"unit": "apache2.service"}},
            {"type": "firstboot_script", "params": {"script": NEXTCLOUD_FIRSTBOOT}},
        ],
    },
]


# --- Loader ---------------------------------------------------------------------------------------

KINDS = ("zones", "categories", "images", "sources", "lifecycles", "steps")


@dataclass
class DemoSummary:
    """What a load did: rows created and updated per kind, and what it left to the managers."""

    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    updated: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    recipes_kept: int = 0
    dates_kept: int = 0

    def line(self) -> str:
        """One line for the command's output and the audit log."""

        def counts(values: dict[str, int]) -> str:
            parts = [f"{n} {kind}" for kind, n in values.items() if n]
            return ", ".join(parts) or "nothing"

        return (
            f"Demo catalogue: created {counts(self.created)}; updated {counts(self.updated)}; "
            f"kept {self.recipes_kept} existing recipes and {self.dates_kept} non-demo dates."
        )

    def __str__(self) -> str:
        return self.line()


def _cleaned_recipe(label: str, recipe: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe's steps with normalized parameters; ValueError names the first bad step."""
    steps = []
    for position, step in enumerate(recipe, start=1):
        params, errors = clean_params(step["type"], step.get("params", {}))
        if errors:
            details = "; ".join(f"{name}: {message}" for name, message in errors.items())
            raise ValueError(f"Demo image {label!r}, step {position} ({step['type']}): {details}")
        steps.append({"type": step["type"], "params": params, "enabled": step.get("enabled", True)})
    return steps


_M = TypeVar("_M", bound=models.Model)


def _upsert(
    model: type[_M],
    lookup: dict[str, Any],
    values: dict[str, Any],
    kind: str,
    summary: DemoSummary,
    *,
    on_create: dict[str, Any] | None = None,
) -> _M:
    """update_or_create by natural key, but writing (and counting) only what really changed,
    so that a second load leaves rows and their `updated_at` untouched.
    `on_create` values are set on a new row only."""
    obj = model._default_manager.filter(**lookup).first()
    if obj is None:
        obj = model(**lookup, **values, **(on_create or {}))
        obj.full_clean()
        obj.save()
        summary.created[kind] += 1
        return obj
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    if changed:
        for name in changed:
            setattr(obj, name, values[name])
        obj.full_clean()
        obj.save()
        summary.updated[kind] += 1
    return obj


def _image_values(data: dict[str, Any], category: Category, base: Image | None) -> dict[str, Any]:
    kind = ImageKind.INSTANTAPP if base is not None else ImageKind.OS
    return {
        "kind": kind.value,
        "name": data["name"],
        "description": data.get("description", ""),
        "logo": data.get("logo", ""),
        "category": category,
        "architectures": list(data["architectures"]),
        "commercial_types": list(data.get("commercial_types", [])),
        "distribution": data.get("distribution", ""),
        "version": data.get("version", ""),
        "codename": data.get("codename", ""),
        "boot_mode": str(data.get("boot_mode", "")),
        "base_image": base,
    }


def _image_settings(data: dict[str, Any]) -> dict[str, Any]:
    """What a new image gets and a later load leaves to the managers: its storage types
    (both when the demo names none)."""
    return {"storage_types": list(data.get("storage_types") or all_storage_types())}


def _load_sources(image: Image, data: dict[str, Any], local_channel: str, s: DemoSummary) -> None:
    for arch, source in data.get("sources", {}).items():
        values = {
            "channel_url": source["channel_url"].replace(LOCAL_CHANNEL, local_channel),
            "file_pattern": source["file_pattern"],
            "checksum_file": source["checksum_file"],
            "checksum_format": str(source["checksum_format"]),
            "serial_pattern": source.get("serial_pattern", ""),
        }
        # Only a demo that really has the key writes signature fields: an empty demo value
        # must not wipe a key a manager filled in.
        for name in ("signature_file", "signing_key"):
            if source.get(name):
                values[name] = source[name]
        _upsert(UpstreamSource, {"image": image, "arch": arch}, values, "sources", s)


def _load_lifecycle(image: Image, data: dict[str, Any], s: DemoSummary) -> None:
    lifecycle = UpstreamLifecycle.objects.filter(image=image).first()
    created = lifecycle is None
    if lifecycle is None:
        lifecycle = UpstreamLifecycle(
            image=image,
            eol_product=data["eol_product"],
            eol_cycle=data["eol_cycle"],
            deprecation_basis=DeprecationBasis.SECURITY,
        )
    changed = False
    # Ids are filled when missing; a manager may have pointed them elsewhere on purpose.
    for name in ("eol_product", "eol_cycle"):
        if not getattr(lifecycle, name):
            setattr(lifecycle, name, data[name])
            changed = True
    for name in UpstreamLifecycle.DATE_FIELDS:
        source = lifecycle.source_of(name)
        if source not in (DateSource.NONE, DateSource.DEMO):
            s.dates_kept += 1
            continue
        value = dt.date.fromisoformat(data[name]) if data.get(name) else None
        new_source = DateSource.DEMO.value if value else DateSource.NONE.value
        if getattr(lifecycle, name) != value or source != new_source:
            setattr(lifecycle, name, value)
            setattr(lifecycle, f"{name}_source", new_source)
            changed = True
    if created or changed:
        # `last_import_ok` is null=True without blank=True, so full_clean() would reject its
        # default None; the loader never sets it.
        lifecycle.full_clean(exclude=["last_import_ok"])
        lifecycle.save()
        if created:
            s.created["lifecycles"] += 1
        else:
            s.updated["lifecycles"] += 1


def _load_recipe(image: Image, steps: list[dict[str, Any]], s: DemoSummary) -> None:
    # A recipe is the managers' once it exists: only an image without steps gets the demo's.
    if image.steps.exists():
        s.recipes_kept += 1
        return
    for position, step in enumerate(steps, start=1):
        row = RecipeStep(image=image, position=position, **step)
        row.full_clean()
        row.save()
        s.created["steps"] += 1


def load_demo(*, demo_upstream_url: str) -> DemoSummary:
    """Create or update the demo catalogue; safe to run any number of times.

    `demo_upstream_url` is the channel of the "Debian 12 (local demo)" image: the project's
    local HTTP server directory holding `debian-12-local-amd64.qcow2` and `SHA256SUMS`.
    Raises ValueError, naming the image and step, if a demo recipe step does not validate.
    """
    local_channel = (
        demo_upstream_url if demo_upstream_url.endswith("/") else demo_upstream_url + "/"
    )
    # Validate every recipe before writing anything.
    recipes = {
        data["label"]: _cleaned_recipe(data["label"], data.get("recipe", []))
        for data in [*OS_IMAGES, *INSTANTAPPS]
    }
    summary = DemoSummary()
    with transaction.atomic():
        for code in ZONES:
            _upsert(
                Zone,
                {"code": code},
                {},
                "zones",
                summary,
                on_create={"enabled": code in ZONES_ENABLED_ON_FIRST_LOAD},
            )
        categories = {
            name: _upsert(Category, {"name": name}, {"description": text}, "categories", summary)
            for name, text in CATEGORIES.items()
        }
        for data in OS_IMAGES:
            values = _image_values(data, categories[DISTRIBUTIONS_CATEGORY], None)
            image = _upsert(
                Image,
                {"label": data["label"]},
                values,
                "images",
                summary,
                on_create=_image_settings(data),
            )
            _load_sources(image, data, local_channel, summary)
            _load_lifecycle(image, data["lifecycle"], summary)
            _load_recipe(image, recipes[data["label"]], summary)
        for data in INSTANTAPPS:
            base = Image.objects.get(label=data["base_image"])
            values = _image_values(data, categories[INSTANTAPPS_CATEGORY], base)
            image = _upsert(
                Image,
                {"label": data["label"]},
                values,
                "images",
                summary,
                on_create=_image_settings(data),
            )
            _load_recipe(image, recipes[data["label"]], summary)
        audit.record("demo.loaded", message=summary.line())
    return summary
