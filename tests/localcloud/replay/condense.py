"""Condense a go-vcr recording of real Scaleway traffic into a replay spec (facts only).

    .venv/bin/python -m tests.localcloud.replay.condense <git-dir> <path in repo> [name]

reads `<path>` at HEAD of the git directory (a mirror of
scaleway/terraform-provider-scaleway) and writes `specs/<name>.json`. What a spec keeps of
each recorded interaction (a "step"):

- `method`, `path` and `query`, with every UUID replaced by a variable `{vN}` bound from an
  earlier answer (`bind` on that step: variable -> JSON path), `{project}` for the project or
  organization id, `{ext_N}` for an id no earlier answer gave (the replayer cannot send it:
  the step fails with that reason);
- `body`: the request's JSON with the same substitution (what a client sends);
- `status`, and `keys`: the answer's top-level keys and the keys of each object under them
  (the body shape);
- `facts`: lifecycle states and the values the flows depend on (`state`, `status`,
  `volume_type`, a task's `description`, a local image's `type`, an error's `type`), by JSON
  path.

Recording text (names of the recorded account, dates, messages beyond the error type, other
values) is not kept. The recording's own ids never appear in a spec.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

SPECS = Path(__file__).resolve().parent / "specs"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SELECTORS = ("arch", "type", "zone", "name", "volume_type", "commercial_type", "protocol")
FIELD = re.compile(r"[a-z_][a-z0-9_]*")
ZERO = "00000000-0000-0000-0000-000000000000"
FACT_KEYS = ("state", "status", "volume_type", "description", "type")
OWNER_KEYS = ("project", "organization", "project_id", "organization_id", "default_project_id")


class Ids:
    """The recording's UUIDs as variables: bound where an answer first shows them."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.external = 0

    def learn_owner(self, data: Any) -> None:
        """Project and organization ids of request bodies and queries become `{project}`."""
        if isinstance(data, dict):
            for key, value in data.items():
                if key in OWNER_KEYS and isinstance(value, str) and UUID.fullmatch(value):
                    self.names.setdefault(value, "project")
                else:
                    self.learn_owner(value)
        elif isinstance(data, list):
            for item in data:
                self.learn_owner(item)

    def text(self, value: str) -> str:
        def name(match: re.Match[str]) -> str:
            found = match.group(0)
            if found == ZERO:
                return found
            if found not in self.names:
                self.external += 1
                self.names[found] = f"ext_{self.external}"
            return "{" + self.names[found] + "}"

        return UUID.sub(name, value)

    def data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        return value

    def bind(self, body: Any, prefix: str = "") -> dict[str, Any]:
        """New variables for ids this answer shows first: variable -> JSON path, or, for an
        id inside a list item, {"path", "where"}: the item is found by its fields in `where`
        (a list's order is not a fact: the Marketplace answers the same items in any order)."""
        found: dict[str, Any] = {}

        def walk(value: Any, path: str, item: Any = None) -> None:
            if isinstance(value, str) and UUID.fullmatch(value) and value != ZERO:
                if value not in self.names:
                    count = sum(1 for n in self.names.values() if n.startswith("v"))
                    self.names[value] = f"v{count + 1}"
                    where = {
                        k: v for k, v in (item or {}).items() if k in SELECTORS and v is not None
                    }
                    found[self.names[value]] = {"path": path, "where": where} if where else path
            elif isinstance(value, dict):
                for key, child in value.items():
                    walk(child, f"{path}.{key}" if path else key, item)
            elif isinstance(value, list):
                for index, child in enumerate(value):
                    here = f"{path}.{index}" if path else str(index)
                    walk(child, here, child if isinstance(child, dict) else item)

        walk(body, prefix)
        return found


def shape(body: Any) -> dict[str, list[str]]:
    """Top-level keys, and the keys of each object (or first list item) under them."""
    if not isinstance(body, dict):
        return {}
    keys: dict[str, list[str]] = {"": sorted(body)}
    for key, value in body.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = value[0]
            key = f"{key}.0"
        # A map keyed by data (server types, ids) is catalogue content, not shape.
        if isinstance(value, dict) and value and all(FIELD.fullmatch(k) for k in value):
            keys[key] = sorted(value)
    return keys


def facts(body: Any, path: str = "", depth: int = 0) -> dict[str, Any]:
    """States and the other values the flows depend on, by JSON path (depth <= 3)."""
    found: dict[str, Any] = {}
    if depth > 3:
        return found
    if isinstance(body, dict):
        for key, value in body.items():
            here = f"{path}.{key}" if path else key
            if key in FACT_KEYS and isinstance(value, str | type(None)):
                if key == "description" and not path.endswith("task"):
                    continue
                if key == "type" and depth > 0 and "local_image" not in path:
                    continue
                found[here] = value
            elif isinstance(value, dict | list):
                found.update(facts(value, here, depth + 1))
    elif isinstance(body, list) and body:
        # Lists: only the first item.
        found.update(facts(body[0], f"{path}.0", depth + 1))
    return found


def condense(cassette: dict[str, Any]) -> list[dict[str, Any]]:
    ids = Ids()
    steps = []
    for interaction in cassette["interactions"]:
        request, response = interaction["request"], interaction["response"]
        url = urlsplit(request["url"])
        body: Any = None
        if request.get("body"):
            try:
                body = json.loads(request["body"])
            except ValueError:
                body = {"_raw": "non-JSON body"}
        query = parse_qsl(url.query, keep_blank_values=True)
        ids.learn_owner(body)
        ids.learn_owner(dict(query))
        step: dict[str, Any] = {
            "method": request["method"],
            "path": ids.text(url.path),
            "query": [[k, ids.text(v)] for k, v in query],
        }
        if url.hostname and ".s3." in url.hostname:
            # Object Storage, virtual-hosted: the replayer sends it path-style to moto.
            step["s3_bucket"] = url.hostname.split(".s3.")[0]
            body = None if body is None else {"_raw": "object data"}
        if body is not None:
            step["body"] = ids.data(body)
        answer: Any = None
        if response.get("body"):
            try:
                answer = json.loads(response["body"])
            except ValueError:
                answer = None
        step["status"] = response["code"]
        step["keys"] = shape(answer)
        step["facts"] = facts(answer)
        bound = ids.bind(answer)
        if bound:
            step["bind"] = bound
        steps.append(step)
    return steps


def main(argv: list[str]) -> None:
    git_dir, path = argv[0], argv[1]
    name = argv[2] if len(argv) > 2 else Path(path).name.removesuffix(".cassette.yaml")
    commit = subprocess.run(
        ["git", "--git-dir", git_dir, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    text = subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"HEAD:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    spec = {
        "source": f"scaleway/terraform-provider-scaleway@{commit[:12]}:{path}",
        "steps": condense(yaml.safe_load(text)),
    }
    SPECS.mkdir(exist_ok=True)
    target = SPECS / f"{name}.json"
    target.write_text(json.dumps(spec, indent=1) + "\n")
    print(f"{target.name}: {len(spec['steps'])} steps")


if __name__ == "__main__":
    main(sys.argv[1:])
