"""The Instance v1 OpenAPI contract: localcloud's responses checked against the spec.

`check(method, url, status, body)` finds the operation for a concrete URL, converts the
response schema (OpenAPI 3.1 with 3.0-style `nullable`) to JSON Schema, resolves `$ref`s
and validates with jsonschema. `EXCEPTIONS` lists, in one place, where the real API's
behaviour wins over the spec; nothing else is tolerated.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from jsonschema import Draft202012Validator

SPEC_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "openapi"
SPEC = SPEC_DIR / "scaleway.instance.v1.Api.yml"
SKIP_REASON = f"the Instance OpenAPI spec is not at {SPEC}"

# Where the real API wins over the spec. Keys: "status <METHOD> <template> <code>" (a status
# the spec does not list) or "null <json.path>" (a null where the spec has no `nullable`;
# `*` is any list index or map key).
EXCEPTIONS: dict[str, str] = {
    "status POST /servers/{server_id}/action 202": (
        "server actions answer 202 Accepted on Scaleway (tf and sdk cassettes); the spec says 200"
    ),
    "status POST /snapshots/{snapshot_id}/export 202": (
        "a snapshot export answers 202 Accepted with its task (tf export-snapshot cassettes)"
    ),
    "null server.public_ip": "no public IP: the real API answers null (tf cassettes)",
    "null servers.*.public_ip": "idem, in lists",
    "null server.location": "a stopped server has no hypervisor location: null on Scaleway",
    "null servers.*.location": "idem, in lists",
    "null server.placement_group": "no placement group: null on Scaleway",
    "null servers.*.placement_group": "idem, in lists",
    "null server.bootscript": "bootscripts are gone; always null (reference §2.10)",
    "null servers.*.bootscript": "idem, in lists",
    "null server.image.default_bootscript": "idem, inside the server's image",
    "null servers.*.image.default_bootscript": "idem, in lists",
    "null image.default_bootscript": "always null since bootscripts were removed",
    "null images.*.default_bootscript": "idem, in lists",
    "null server.image": "a server made from a snapshot (volumes.0) has no image: null",
    "null servers.*.image": "idem, in lists",
    "null server.ipv6": "routed IPs: the legacy ipv6 block is null (tf cassettes)",
    "null servers.*.ipv6": "idem, in lists",
    "null server.security_group": "no group (never in practice: a default one is created)",
    "null snapshot.base_volume": "an imported snapshot has no base volume: null on Scaleway",
    "null snapshots.*.base_volume": "idem, in lists",
    "null snapshot.error_details": "no error: null on Scaleway (tf snapshot-from-s3 cassette)",
    "null snapshots.*.error_details": "idem, in lists",
    "null ip.server": "a detached IP has server null (tf cassettes)",
    "null ips.*.server": "idem, in lists",
    "null ip.reverse": "no reverse: null on Scaleway",
    "null ips.*.reverse": "idem, in lists",
    "null volume.server": "a detached local volume has server null",
    "null volumes.*.server": "idem, in lists",
    "null server.volumes.*.export_uri": "export_uri is deprecated and null on Scaleway",
    "null servers.*.volumes.*.export_uri": "idem, in lists",
    "null volume.export_uri": "idem, on the volume",
    "null volumes.*.export_uri": "idem, in lists",
    "null rule.dest_ip_range": "no destination range: null on Scaleway (tf cassettes)",
    "null rules.*.dest_ip_range": "idem, in lists",
    "null rule.dest_port_from": "no port (ICMP, ANY): null on Scaleway",
    "null rules.*.dest_port_from": "idem, in lists",
    "null rule.dest_port_to": "a single port has dest_port_to null on Scaleway",
    "null rules.*.dest_port_to": "idem, in lists",
    "null task.terminated_at": "a pending task is not terminated: null on Scaleway",
}


def available() -> bool:
    return SPEC.is_file()


@functools.cache
def _spec() -> dict:
    return yaml.safe_load(SPEC.read_text())


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0-style `nullable: true` -> JSON Schema null; everything else as is."""
    if isinstance(node, list):
        return [_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        if "$ref" in out:
            return {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@functools.cache
def _components() -> dict:
    return _to_json_schema(_spec()["components"])


@functools.cache
def _operations() -> list[tuple[str, re.Pattern[str], str, dict]]:
    """(method, path regex, template relative to the zone, responses) per operation."""
    result = []
    for template, item in _spec()["paths"].items():
        regex = re.sub(r"\{(\w+)\}", r"[^/]+", template)
        short = template.replace("/instance/v1/zones/{zone}", "")
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                result.append((method.upper(), re.compile(f"^{regex}$"), short, operation))
    # Literal segments first, so /security_groups/default/rules beats {security_group_id}.
    result.sort(key=lambda op: op[2].count("{"))
    return result


def find_operation(method: str, path: str) -> tuple[str, dict] | None:
    for op_method, regex, template, operation in _operations():
        if op_method == method and regex.match(path):
            return template, operation
    return None


def _path_key(path: Any) -> str:
    return ".".join("*" if isinstance(p, int) else str(p) for p in path)


def _wildcards(key: str) -> set[str]:
    """`servers.0.volumes.0.x` -> forms with list indices and map keys as `*`."""
    parts = key.split(".")
    forms = {key}
    for i, part in enumerate(parts):
        if part.isdigit() or part == "*":
            forms |= {".".join([*parts[:i], "*", *parts[i + 1 :]])}
    # Both `servers.*.volumes.0` and `servers.*.volumes.*`.
    return forms | {".".join("*" if p.isdigit() else p for p in parts)}


def problems(method: str, url: str, status: int, body: Any) -> list[str]:
    """What in one response disagrees with the spec (after EXCEPTIONS); [] when it conforms."""
    path = urlsplit(url).path
    found = find_operation(method.upper(), path)
    if found is None:
        return [f"{method} {path}: no such operation in the spec"]
    template, operation = found
    responses = operation["responses"]
    code = str(status)
    if code not in responses:
        if f"status {method.upper()} {template} {code}" in EXCEPTIONS:
            code = next(c for c in responses if c.startswith("2"))
        elif status >= 400:
            return [] if isinstance(body, dict) and "message" in body else ["non-JSON error"]
        else:
            return [f"{method} {template}: status {status} not in {sorted(responses)}"]
    content = (responses[code] or {}).get("content") or {}
    schema = (content.get("application/json") or {}).get("schema")
    if schema is None:
        return []
    root = {"components": _components(), "allOf": [_to_json_schema(schema)]}
    found_problems = []
    for error in Draft202012Validator(root).iter_errors(body):
        key = _path_key(error.absolute_path)
        if error.instance is None and any(f"null {k}" in EXCEPTIONS for k in _wildcards(key)):
            continue
        found_problems.append(f"{method} {template} -> {key}: {error.message}")
    return found_problems


def check_component(spec_name: str, schema: str, body: Any) -> None:
    """Validate a body against one component schema of an OpenAPI file in SPEC_DIR.

    OpenAPI's `nullable` becomes a JSON Schema null type, and every documented property is
    required (localcloud answers them all). Skips the test when the file is not there.
    """
    import pytest
    from jsonschema import Draft202012Validator

    path = SPEC_DIR / spec_name
    if not path.is_file():
        pytest.skip(f"the OpenAPI file is not at {path}")
    spec = yaml.safe_load(path.read_text())

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: fix(v) for k, v in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            if isinstance(node.get("$ref"), str):
                node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/$defs/")
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
            return node
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    validator = Draft202012Validator(
        {"$defs": fix(spec["components"]["schemas"]), "$ref": f"#/$defs/{schema}"}
    )
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, errors
