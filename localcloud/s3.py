"""Object Storage: the S3 protocol through moto's server mode, one endpoint per region as on
Scaleway. moto keeps objects in its own memory (a multipart upload is assembled in memory
when completed): fine for test and demo images. A snapshot import copies the object into
localcloud's own store, so imported snapshots outlive a restart even though objects do not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REGIONS = ("fr-par", "nl-ams", "pl-waw")


def start_servers(host: str, first_port: int) -> tuple[dict[str, str], list[object]]:
    """Start one moto S3 server per region on consecutive ports; return endpoints, servers."""
    from moto.server import ThreadedMotoServer

    endpoints: dict[str, str] = {}
    servers: list[object] = []
    for offset, region in enumerate(REGIONS):
        server = ThreadedMotoServer(ip_address=host, port=first_port + offset, verbose=False)
        server.start()
        servers.append(server)
        endpoints[region] = f"http://{host}:{first_port + offset}"
    return endpoints, servers


def client(endpoint: str, region: str) -> Any:
    """A boto3 S3 client of one region's endpoint (moto takes any credentials)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="localcloud",
        aws_secret_access_key="localcloud",
    )


def copy_object(endpoint: str, region: str, bucket: str, key: str, target: Path) -> int:
    """Stream an object into `target`; return its size. Raises KeyError if it is missing."""
    from botocore.exceptions import ClientError

    tmp = target.with_suffix(".part")
    try:
        client(endpoint, region).download_file(bucket, key, str(tmp))
    except ClientError as exc:
        tmp.unlink(missing_ok=True)
        raise KeyError(f"{bucket}/{key}") from exc
    tmp.replace(target)
    return target.stat().st_size


def put_file(endpoint: str, region: str, source: Path, bucket: str, key: str) -> None:
    """Upload `source` as `bucket`/`key` (a snapshot export); boto3's errors pass through."""
    client(endpoint, region).upload_file(str(source), bucket, key)
