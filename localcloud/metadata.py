"""The instance metadata service that guests reach at http://169.254.42.42 (Scaleway's).

One threaded HTTP server on 127.0.0.1 serves every VM. It does not see the guest: each VM's
slirp `guestfwd` relays 169.254.42.42:80 through `nc -s <address>`, a loopback source address
unique to that VM, and `server_for_address` (given by the machine backend) turns the
connection's source address back into a server id.

Routes (what the Scaleway images, cloud-init's Scaleway datasource and `scw-metadata` use):
- `GET /`: 200 with a non-empty body (cloud-init >= 23.2 probes the base URL first);
- `GET /conf?format=json`: the server as the metadata API shows it; `GET /conf`: the same as
  shell-quoted `KEY=value` lines (lists as `NAME=count` plus `NAME_<i>...`, nested keys joined
  with `_`, e.g. `SSH_PUBLIC_KEYS_0_KEY`, `TAGS_0`, `PUBLIC_IP_ADDRESS`);
- `GET /user_data` (keys, one a line, or `{"user_data": [...]}` with `?format=json`) and
  `GET /user_data/<key>` (404 when there is none: cloud-init reads that as "no user data");
- `PATCH /state` `{"state_detail": "booted"}`: what `scw-signal-state` sends at boot.

SSH keys are the project's keys (localcloud has no IAM, so none) plus the server's
`AUTHORIZED_KEY=<key with spaces as _>` tags, as on Scaleway.

`public_ip.address` (and each `public_ips` entry) is the address slirp leases to the guest,
not the loopback address the API shows: cloud-init >= 23.2 configures DHCP only on the NIC
whose lease equals a listed public address and would otherwise put a static, unroutable
address on the only NIC. The gateway given is slirp's, so the metadata route it adds works.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("localcloud.metadata")

# Store kinds of the records read here (owned by the Instance, VPC and IPAM modules).
SERVER = "instance_server"
IP = "instance_ip"
VOLUME = "instance_volume"
PRIVATE_NIC = "instance_private_nic"

AUTHORIZED_KEY_TAG = "AUTHORIZED_KEY="
SAFE_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


# --- the documents ------------------------------------------------------------------------


def ssh_fingerprint(key: str) -> str:
    """`<bits> SHA256:<digest> <comment> (<TYPE>)`, the shape Scaleway's metadata shows."""
    parts = key.split(None, 2)
    if len(parts) < 2:
        return ""
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return ""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    kind = parts[0]
    bits = {"ssh-ed25519": 256, "ecdsa-sha2-nistp256": 256, "ecdsa-sha2-nistp384": 384}.get(kind)
    if bits is None and kind == "ssh-rsa":
        bits = _rsa_bits(blob)
    if bits is None and kind.startswith("ecdsa-sha2-nistp"):
        bits = int(kind.rsplit("p", 1)[-1] or 0)
    label = kind.removeprefix("ssh-").split("-")[0].upper()
    comment = f" {parts[2]}" if len(parts) > 2 else ""
    return f"{bits or 0} SHA256:{digest}{comment} ({label})"


def _rsa_bits(blob: bytes) -> int | None:
    """The modulus size of an ssh-rsa public key blob (string type, mpint e, mpint n)."""
    try:
        offset = 0
        fields = []
        for _ in range(3):
            (length,) = struct.unpack(">I", blob[offset : offset + 4])
            fields.append(blob[offset + 4 : offset + 4 + length])
            offset += 4 + length
        return int.from_bytes(fields[2], "big").bit_length()
    except struct.error:
        return None


def ssh_keys(tags: list[str], project_keys: list[str] | None = None) -> list[dict[str, Any]]:
    """The project's keys then the `AUTHORIZED_KEY=` tags (`_` stands for a space)."""
    keys = list(project_keys or [])
    for tag in tags:
        if tag.startswith(AUTHORIZED_KEY_TAG):
            keys.append(tag[len(AUTHORIZED_KEY_TAG) :].replace("_", " ").strip())
    return [{"key": k, "fingerprint": ssh_fingerprint(k)} for k in keys if k]


def server_conf(
    cloud: Any, server: dict[str, Any], guest_ipv4: str, gateway: str, pn_name: Callable[[str], str]
) -> dict[str, Any]:
    """The JSON document of `GET /conf?format=json` for one server record."""
    ips = cloud.store.all(IP, lambda i: (i.get("server") or {}).get("id") == server["id"])
    public_ips = [
        {
            "id": ip["id"],
            "address": guest_ipv4,
            "dynamic": bool(ip.get("_dynamic")),
            "gateway": gateway,
            "netmask": "32",
            "family": "inet",
            "provisioning_mode": "dhcp",
            "tags": ip.get("tags") or [],
            "state": "attached",
            "ipam_id": ip.get("ipam_id"),
        }
        for ip in ips
        if ip.get("type") != "routed_ipv6"
    ]
    volumes: dict[str, dict[str, Any]] = {}
    for slot, ref in sorted((server.get("_volumes") or {}).items()):
        volume = cloud.store.get(VOLUME, ref["id"]) if ref["volume_type"] == "l_ssd" else None
        entry = {"id": ref["id"], "volume_type": ref["volume_type"], "boot": slot == "0"}
        if volume:
            entry.update(name=volume["name"], size=volume["size"], export_uri=None)
        volumes[slot] = entry
    nics = cloud.store.all(PRIVATE_NIC, lambda n: n.get("server_id") == server["id"])
    zone = server.get("zone") or ""
    return {
        "id": server["id"],
        "name": server["name"],
        "hostname": server.get("hostname") or server["name"],
        "commercial_type": server["commercial_type"],
        "organization": server.get("organization"),
        "project": server.get("project"),
        "tags": list(server.get("tags") or []),
        "state_detail": server.get("state_detail") or "",
        "ssh_public_keys": ssh_keys(server.get("tags") or []),
        "public_ip": public_ips[0] if public_ips else None,
        "public_ips": public_ips,
        "private_ip": None,
        "ipv6": None,
        "dns": server.get("dns"),
        "zone": zone,
        "location": {
            "zone_id": zone,
            "platform_id": "localcloud",
            "cluster_id": "1",
            "hypervisor_id": "1",
            "node_id": "1",
        },
        "bootscript": None,
        "extra_networks": [],
        "timezone": "UTC",
        "volumes": volumes,
        "private_nics": [
            {
                "id": nic["id"],
                "mac_address": nic["mac_address"],
                "private_network_id": nic["private_network_id"],
                "private_network_name": pn_name(nic["private_network_id"]),
                "server_id": nic["server_id"],
                "state": nic.get("state"),
            }
            for nic in nics
        ],
    }


def shell_quote(value: str) -> str:
    """A value as a shell word: bare when safe, else single-quoted with `'\\''` for quotes
    (the form the guest tools unquote with sed)."""
    if value and SAFE_WORD.fullmatch(value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def to_text(conf: dict[str, Any]) -> str:
    """The text format of `GET /conf`: `KEY=value` lines, values shell-quoted."""
    lines: list[str] = []

    def emit(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                name = re.sub(r"[^A-Z0-9]", "_", str(key).upper())
                emit(f"{prefix}_{name}" if prefix else name, item)
        elif isinstance(value, list):
            lines.append(f"{prefix}={len(value)}")
            for index, item in enumerate(value):
                emit(f"{prefix}_{index}", item)
        elif value is None or value == {}:
            lines.append(f"{prefix}=")
        else:
            lines.append(f"{prefix}={shell_quote(str(value))}")

    emit("", conf)
    return "\n".join(lines) + "\n"


# --- the server ---------------------------------------------------------------------------


class MetadataService:
    """The HTTP server; `server_for_address(source address) -> server id | None`."""

    def __init__(
        self,
        cloud: Any,
        server_for_address: Callable[[str], str | None],
        guest_ipv4: str,
        gateway: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.cloud = cloud
        self.server_for_address = server_for_address
        self.guest_ipv4 = guest_ipv4
        self.gateway = gateway
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.service = self  # type: ignore[attr-defined]
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True
        )
        self.thread.name = "metadata"
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- what the handler asks -------------------------------------------------------------

    def server(self, address: str) -> dict[str, Any] | None:
        server_id = self.server_for_address(address)
        return self.cloud.store.get(SERVER, server_id) if server_id else None

    def conf(self, server: dict[str, Any]) -> dict[str, Any]:
        return server_conf(self.cloud, server, self.guest_ipv4, self.gateway, self._pn_name)

    def _pn_name(self, private_network_id: str) -> str:
        lookup = getattr(self.cloud, "private_network_lookup", None)
        network = lookup(private_network_id) if lookup else None
        return (network or {}).get("name") or ""

    def set_state_detail(self, server_id: str, detail: str) -> bool:
        """What the guest signals; under the cloud's lock so no API write interleaves."""
        with self.cloud.lock:
            server = self.cloud.store.get(SERVER, server_id)
            if server is None:
                return False
            server["state_detail"] = detail
            server["modification_date"] = self.cloud.clock.iso()
            self.cloud.store.put(SERVER, server)
        return True


class _Handler(BaseHTTPRequestHandler):
    server_version = "localcloud-metadata"

    @property
    def service(self) -> MetadataService:
        service: MetadataService = self.server.service  # type: ignore[attr-defined]
        return service

    def _answer(
        self, status: int, body: bytes | str | dict[str, Any], content_type: str = ""
    ) -> None:
        if isinstance(body, dict):
            payload, content_type = json.dumps(body).encode(), "application/json"
        else:
            payload = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type or "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _route(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        json_format = (query.get("format") or [""])[-1] == "json"
        if path == "/" and self.command in ("GET", "HEAD"):
            self._answer(200, "conf\nuser_data\nstate\n")
            return
        server = self.service.server(self.client_address[0])
        if server is None:
            self._answer(403, {"type": "denied", "message": "unknown instance"})
            return
        if path == "/conf" and self.command in ("GET", "HEAD"):
            conf = self.service.conf(server)
            self._answer(200, conf if json_format else to_text(conf))
        elif path == "/user_data" and self.command in ("GET", "HEAD"):
            keys = sorted(server.get("_user_data") or {})
            self._answer(
                200, {"user_data": keys} if json_format else "".join(k + "\n" for k in keys)
            )
        elif path.startswith("/user_data/") and self.command in ("GET", "HEAD"):
            data = (server.get("_user_data") or {}).get(unquote(path[len("/user_data/") :]))
            if data is None:
                self._answer(404, {"type": "not_found", "message": "no such user data"})
            else:
                self._answer(200, base64.b64decode(data))
        elif path == "/state" and self.command in ("PATCH", "PUT", "POST"):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                detail = str(body["state_detail"])
            except (ValueError, KeyError, TypeError):
                self._answer(400, {"type": "invalid_request_error", "message": "state_detail"})
                return
            self.service.set_state_detail(server["id"], detail)
            self._answer(200, {"state_detail": detail})
        else:
            self._answer(404, {"type": "not_found", "message": f"no route {path}"})

    do_GET = do_HEAD = do_PATCH = do_PUT = do_POST = _route

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)
