"""localcloud for the cloud adapter, publish and janitor tests: one `python -m localcloud`
subprocess per test session (tests/localcloud's LocalCloudProcess), the SCW_* environment
pointed at it, fast waiter and retry settings, and a clean cloud (API state, faults and
objects) before each test.

tests/builds/test_publish.py and test_janitor.py import these fixtures by name.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tests.localcloud.conftest import LocalCloudProcess, _free_port

ACCESS_KEY = "SCWXXXXXXXXXXXXXXXXX"
SECRET_KEY = "11111111-1111-1111-1111-111111111111"
PROJECT_ID = "11111111-1111-1111-1111-111111111111"
ZONES = ("fr-par-1", "fr-par-2", "nl-ams-1")

# One process for the whole session, even when the fixtures below are imported by several
# test modules (each import would otherwise make its own session fixture).
_PROCESS: list[LocalCloudProcess] = []


def _process() -> LocalCloudProcess:
    if not _PROCESS:
        root = Path(tempfile.mkdtemp(prefix="localcloud-cloud-tests-"))
        atexit.register(shutil.rmtree, root, True)  # runs after the stop below (last in, first out)
        cloud = LocalCloudProcess(state_dir=root / "state", port=_free_port(3))
        cloud.state_dir.mkdir(parents=True)
        cloud.start()
        atexit.register(cloud.stop)
        _PROCESS.append(cloud)
    return _PROCESS[0]


@dataclass
class Cloud:
    """The running localcloud, with the operator calls tests need."""

    process: LocalCloudProcess

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def s3_endpoints(self) -> dict[str, str]:
        return self.process.s3

    def fault(self, **fault: Any) -> None:
        """Arm a fault: operation, count, status, retry_after, delay, message."""
        self.process.operator("POST", "faults", **fault)

    def inventory(self) -> dict[str, list[dict]]:
        return self.process.operator("GET", "inventory")

    def factory_resources(self) -> list[tuple[str, str]]:
        """(kind, id) of every resource in localcloud tagged by the factory."""
        return [
            (kind, item.get("id", ""))
            for kind, items in self.inventory().items()
            for item in items
            if isinstance(item, dict) and "image-factory" in (item.get("tags") or [])
        ]

    def s3(self, region: str):
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoints[region],
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def objects(self, region: str, prefix: str = "image-factory/") -> list[str]:
        """Keys under a prefix in every bucket of a region's endpoint."""
        s3 = self.s3(region)
        keys: list[str] = []
        for bucket in s3.list_buckets().get("Buckets", []):
            listing = s3.list_objects_v2(Bucket=bucket["Name"], Prefix=prefix)
            keys.extend(item["Key"] for item in listing.get("Contents", []))
        return keys

    def wipe_objects(self) -> None:
        """moto keeps objects across operator resets: empty every bucket."""
        for region in self.s3_endpoints:
            s3 = self.s3(region)
            for bucket in s3.list_buckets().get("Buckets", []):
                listing = s3.list_objects_v2(Bucket=bucket["Name"])
                for item in listing.get("Contents", []):
                    s3.delete_object(Bucket=bucket["Name"], Key=item["Key"])


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Cloud]:
    """A clean localcloud, the SCW_* environment pointed at it, and fast cloud settings."""
    process = _process()
    process.operator("POST", "reset")
    wrapped = Cloud(process)
    wrapped.wipe_objects()
    endpoints = requests.get(f"{process.url}/localcloud/v1/endpoints", timeout=5).json()["s3"]
    for name in ("SCW_CONFIG_PATH", "SCW_PROFILE", "SCW_DEFAULT_ORGANIZATION_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCW_API_URL", process.url)
    monkeypatch.setenv("SCW_ACCESS_KEY", ACCESS_KEY)
    monkeypatch.setenv("SCW_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("SCW_DEFAULT_PROJECT_ID", PROJECT_ID)
    monkeypatch.setenv("SCW_DEFAULT_ZONE", "fr-par-1")
    monkeypatch.setenv("SCW_DEFAULT_REGION", "fr-par")
    monkeypatch.setenv("SCW_S3_ENDPOINTS", ",".join(f"{r}={u}" for r, u in endpoints.items()))
    settings.CLOUD_POLL_SECONDS = 0.05
    settings.CLOUD_POLL_MAX_SECONDS = 0.2
    settings.CLOUD_RETRY_BASE_SECONDS = 0.05
    settings.CLOUD_RETRY_MAX_SECONDS = 3
    settings.CLOUD_REQUEST_TIMEOUT_SECONDS = 10
    settings.CLOUD_RECOVER_SECONDS = 5
    settings.PUBLISH_BUCKET = "factory-test-artefacts"
    settings.PUBLISH_IMPORT_TIMEOUT_SECONDS = 20
    settings.PUBLISH_IMAGE_TIMEOUT_SECONDS = 20
    yield wrapped
    process.operator("DELETE", "faults")


@pytest.fixture(scope="session")
def qcow2_artefact(tmp_path_factory) -> Path:
    """A small valid QCOW2 (1 GiB virtual, zlib-compressed, no backing file)."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    root = tmp_path_factory.mktemp("qcow2")
    raw = root / "blank.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(raw), "1G"], check=True)
    final = root / "artefact.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-c", "-O", "qcow2", str(raw), str(final)], check=True
    )
    return final


@pytest.fixture(scope="session")
def raw_artefact(tmp_path_factory) -> Path:
    """Not a QCOW2 at all, though named like one: the import must refuse it."""
    path = tmp_path_factory.mktemp("raw") / "artefact.qcow2"
    path.write_bytes(b"\0" * 65536)
    return path
