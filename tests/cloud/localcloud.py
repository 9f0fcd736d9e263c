"""localcloud for the cloud adapter, publish and janitor tests: one `python -m localcloud`
subprocess per test session (tests/localcloud's LocalCloudProcess), and `Cloud`, the operator
calls tests make on it.

The `cloud` fixture (tests/conftest.py) points the SCW_* environment at this process, sets fast
waiter and retry settings, and cleans the cloud (API state, faults and objects) before each test.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.localcloud.conftest import LocalCloudProcess, _free_port

ACCESS_KEY = "SCWXXXXXXXXXXXXXXXXX"
SECRET_KEY = "11111111-1111-1111-1111-111111111111"
PROJECT_ID = "11111111-1111-1111-1111-111111111111"
ZONES = ("fr-par-1", "fr-par-2", "nl-ams-1")

# One process for the whole session, started by the first test that asks for the `cloud`
# fixture and stopped when the test process exits.
_PROCESS: list[LocalCloudProcess] = []


def localcloud_process() -> LocalCloudProcess:
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

    def counts(self, *kinds: str) -> dict[str, int]:
        """How many resources of each kind (inventory names: instance_server, block_snapshot,
        ...) localcloud holds."""
        inventory = self.inventory()
        return {kind: len(inventory.get(kind, [])) for kind in kinds}

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
