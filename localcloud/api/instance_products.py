"""The server types localcloud offers (`GET /products/servers`), in the real JSON shape."""

from __future__ import annotations

from typing import Any

GB = 1000**3

# name: (ncpus, ram GiB, arch, max local storage GB (0 = block only), hourly EUR, bandwidth)
_TYPES: dict[str, tuple[int, int, str, int, float, int]] = {
    "DEV1-S": (2, 2, "x86_64", 20, 0.0088, 200_000_000),
    "DEV1-M": (3, 4, "x86_64", 40, 0.0198, 300_000_000),
    "DEV1-L": (4, 8, "x86_64", 80, 0.042, 400_000_000),
    "DEV1-XL": (4, 12, "x86_64", 120, 0.0638, 500_000_000),
    "GP1-XS": (4, 16, "x86_64", 150, 0.091, 500_000_000),
    "GP1-S": (8, 32, "x86_64", 300, 0.187, 800_000_000),
    "PLAY2-PICO": (1, 2, "x86_64", 0, 0.014, 100_000_000),
    "PLAY2-NANO": (2, 4, "x86_64", 0, 0.027, 200_000_000),
    "PLAY2-MICRO": (4, 8, "x86_64", 0, 0.054, 400_000_000),
    "POP2-2C-8G": (2, 8, "x86_64", 0, 0.0735, 400_000_000),
    "POP2-4C-16G": (4, 16, "x86_64", 0, 0.147, 800_000_000),
    "PRO2-XXS": (2, 8, "x86_64", 0, 0.055, 350_000_000),
    "PRO2-XS": (4, 16, "x86_64", 0, 0.11, 700_000_000),
    "PRO2-S": (8, 32, "x86_64", 0, 0.219, 1_500_000_000),
    "COPARM1-2C-8G": (2, 8, "arm64", 0, 0.0426, 200_000_000),
}


def server_type(name: str) -> dict[str, Any]:
    """One ServerType as `GET /products/servers` shows it."""
    ncpus, ram, arch, local_gb, hourly, bandwidth = _TYPES[name]
    local = local_gb * GB
    return {
        "monthly_price": round(hourly * 730, 2),
        "hourly_price": hourly,
        "alt_names": [],
        "per_volume_constraint": {"l_ssd": {"min_size": 1 * GB if local else 0, "max_size": local}},
        "volumes_constraint": {"min_size": local // 2 if local else 0, "max_size": local},
        "ncpus": ncpus,
        "gpu": 0,
        "ram": ram * 1024**3,
        "arch": arch,
        "baremetal": False,
        "network": {
            "interfaces": [{"internal_bandwidth": bandwidth, "internet_bandwidth": bandwidth}],
            "sum_internal_bandwidth": bandwidth,
            "sum_internet_bandwidth": bandwidth,
            "ipv6_support": True,
        },
        "capabilities": {
            "block_storage": True,
            "boot_types": ["local", "rescue"],
            "max_file_systems": 0,
            # Not in the Python SDK's dataclass, but in the real JSON (reference §2.4).
            "hot_snapshots_local_volume": True,
            "placement_groups": True,
            "private_network": 8,
        },
        "scratch_storage_max_size": None,
        "scratch_storage_max_volumes_count": 0,
        "block_bandwidth": bandwidth,
        "end_of_service": False,
    }


def names() -> list[str]:
    return list(_TYPES)


def arch_of(name: str) -> str | None:
    return _TYPES[name][2] if name in _TYPES else None


def local_max(name: str) -> int:
    """The largest local volume a type accepts, in bytes (0 = block storage only)."""
    return _TYPES[name][3] * GB
