"""SDK clients, API objects and S3 clients, all from the environment.

The Scaleway SDK reads SCW_ACCESS_KEY, SCW_SECRET_KEY, SCW_DEFAULT_PROJECT_ID,
SCW_DEFAULT_ORGANIZATION_ID, SCW_DEFAULT_REGION, SCW_DEFAULT_ZONE and SCW_API_URL itself
(`Client.from_env()`): with SCW_API_URL unset it talks to https://api.scaleway.com, set to
localcloud's URL it talks to localcloud. Object Storage endpoints come from SCW_S3_ENDPOINTS
("fr-par=http://127.0.0.1:9001,nl-ams=...") or Scaleway's convention
https://s3.<region>.scw.cloud.

Nothing here logs or stores a credential: clients are built per call from the environment,
and errors name the missing variable, never its value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from scaleway import Client
from scaleway.block.v1 import BlockV1API
from scaleway.instance.v1 import InstanceV1API
from scaleway.instance.v1.custom_api import InstanceUtilsV1API
from scaleway.ipam.v1 import IpamV1API
from scaleway.marketplace.v2 import MarketplaceV2API
from scaleway.vpc.v2 import VpcV2API

from cloud.retries import CloudError

SCW_S3_SUFFIX = ".scw.cloud"


def client() -> Client:
    """A Scaleway SDK client configured from the environment (validated by the SDK)."""
    scw = Client.from_env()
    # Secrets may also come from files (e.g. mounted secrets): SCW_SECRET_KEY_FILE, ...
    for attr, name in (("access_key", "SCW_ACCESS_KEY"), ("secret_key", "SCW_SECRET_KEY")):
        path = os.environ.get(f"{name}_FILE")
        if path and not getattr(scw, attr):
            try:
                setattr(scw, attr, Path(path).read_text().strip())
            except OSError as exc:
                raise CloudError(f"{name}_FILE cannot be read: {exc.strerror}") from exc
    missing = [
        name
        for name, value in (
            ("SCW_ACCESS_KEY", scw.access_key),
            ("SCW_SECRET_KEY", scw.secret_key),
            ("SCW_DEFAULT_PROJECT_ID", scw.default_project_id),
        )
        if not value
    ]
    if missing:
        raise CloudError(f"The cloud is not configured: set {', '.join(missing)}.")
    try:
        scw.validate()
    except ValueError as exc:
        # The SDK's message names the field and the expected format, never the value.
        raise CloudError(f"The cloud configuration is invalid: {exc}") from exc
    return scw


def project_id() -> str:
    """The project the factory creates its resources in (SCW_DEFAULT_PROJECT_ID)."""
    return client().default_project_id or ""


def instance_api() -> InstanceUtilsV1API:
    """Instance v1 (images, snapshots, volumes, servers, security groups, flexible IPs,
    private NICs), with the SDK's user-data helpers."""
    return InstanceUtilsV1API(client())


def instance_v1_api() -> InstanceV1API:
    """The generated Instance v1 API alone (InstanceUtilsV1API is a superset of it)."""
    return InstanceV1API(client())


def block_api() -> BlockV1API:
    """Block Storage (SBS) volumes and snapshots."""
    return BlockV1API(client())


def vpc_api() -> VpcV2API:
    """VPC v2 (regional): VPCs and Private Networks."""
    return VpcV2API(client())


def ipam_api() -> IpamV1API:
    """IPAM (regional): the addresses of private NICs."""
    return IpamV1API(client())


def marketplace_api() -> MarketplaceV2API:
    """The Marketplace catalogue (public on Scaleway)."""
    return MarketplaceV2API(client())


def s3_endpoints() -> dict[str, str]:
    """SCW_S3_ENDPOINTS parsed into {region: url}; empty when unset."""
    endpoints: dict[str, str] = {}
    for item in os.environ.get("SCW_S3_ENDPOINTS", "").split(","):
        region, sep, url = item.strip().partition("=")
        if sep and region.strip() and url.strip():
            endpoints[region.strip()] = url.strip().rstrip("/")
    return endpoints


def s3_endpoint(region: str) -> str:
    """The Object Storage endpoint of a region."""
    return s3_endpoints().get(region) or f"https://s3.{region}.scw.cloud"


def s3_client(region: str) -> Any:  # a botocore S3 client (its type is made at runtime)
    """A boto3 S3 client for a region's Object Storage, with the API key pair as credentials.

    Scaleway's endpoints take virtual-hosted addressing; anything else (localcloud's moto,
    an IP address and port) gets path-style addressing, which needs no wildcard DNS.
    """
    scw = client()
    endpoint = s3_endpoint(region)
    host = urlsplit(endpoint).hostname or ""
    addressing = "virtual" if host.endswith(SCW_S3_SUFFIX) else "path"
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=scw.access_key,
        aws_secret_access_key=scw.secret_key,
        config=Config(
            s3={"addressing_style": addressing},
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=120,
            # Scaleway's S3 does not accept the newer default integrity checksums (CRC32
            # trailers) on every operation; only send them when an operation needs one.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
