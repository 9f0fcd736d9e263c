"""Replays a spec (tests/localcloud/replay/specs/*.json, see condense.py) against a localcloud
and says, step by step, whether localcloud answered as Scaleway did.

A step matches when the status is the recorded one, every recorded key of the answer's shape
is there, and every recorded fact (states, volume types, task descriptions, error types) has
the recorded value. Ids are bound from earlier answers. A GET whose recorded answer carries a
state is polled until that state (or one the recording reaches later on the same path without
a write in between: the timer backend may move past a short transient state between two
polls, or past the whole deletion when the recording polls until a 404), or a recorded 404
until the resource is gone. A write that localcloud refuses because
a resource is in a transient state is tried again, as a client does.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

SPECS = Path(__file__).resolve().parent / "specs"
VARIABLE = re.compile(r"\{(\w+)\}")
STATE_KEYS = ("state", "status")
CREATE_BUCKET = (
    "<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint>"
    "</CreateBucketConfiguration>"
)
POLL_SECONDS = 3.0  # localcloud's transitions take 0.2 s in the tests


@dataclass
class Outcome:
    """One step's result: `problems` empty when localcloud answered as Scaleway did."""

    index: int
    method: str
    path: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "; ".join(self.problems)
        return f"#{self.index} {self.method} {self.path}: {verdict}"


class Unbound(Exception):
    """The step needs an id that no earlier answer gave."""


def load(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((SPECS / f"{name}.json").read_text())
    return spec


def names() -> list[str]:
    return sorted(p.stem for p in SPECS.glob("*.json"))


def _fill(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            if match.group(1) not in variables:
                raise Unbound(match.group(1))
            return variables[match.group(1)]

        return VARIABLE.sub(one, value)
    if isinstance(value, list):
        return [_fill(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, variables) for k, v in value.items()}
    return value


def _at(body: Any, path: str) -> Any:
    """The value at a dotted JSON path (list indexes as numbers); KeyError if absent."""
    for part in path.split(".") if path else []:
        if isinstance(body, list):
            index = int(part)
            if index >= len(body):
                raise KeyError(path)
            body = body[index]
        elif isinstance(body, dict) and part in body:
            body = body[part]
        else:
            raise KeyError(path)
    return body


def _bound(body: Any, where: str | dict[str, Any]) -> Any:
    """The value a binding names: a JSON path, or {"path", "where"} for an id inside a list
    item, found by the item's fields (a list's order is not a fact), else at that index."""
    if isinstance(where, str):
        return _at(body, where)
    path = where["path"]
    parts = path.split(".")
    index = max(i for i, p in enumerate(parts) if p.isdigit())
    items = _at(body, ".".join(parts[:index]))
    for item in items if isinstance(items, list) else []:
        if all(item.get(k) == v for k, v in where["where"].items()):
            return _at(item, ".".join(parts[index + 1 :]))
    return _at(body, path)


def _accepted(steps: list[dict[str, Any]], index: int, path: str) -> set[Any]:
    """The recorded state at `path`, and those the recording reaches later by GETs of the
    same URL: before any write, for a GET; for a write, until the next write to that
    resource (how soon a write's answer shows the new state varies on Scaleway: the same
    update answered `syncing` in one recording and `available` in another)."""
    step = steps[index]
    values = {step["facts"][path]}
    own = {step["path"]}
    if step["method"] == "POST":
        own |= {f"{step['path']}/{{{name}}}" for name in step.get("bind") or {}}
    for later in steps[index + 1 :]:
        if later["method"] != "GET":
            if step["method"] == "GET" or later["path"] in own:
                break
            continue
        if later["path"] in own and path in later["facts"]:
            values.add(later["facts"][path])
    return values


def _gone_later(steps: list[dict[str, Any]], index: int) -> bool:
    """The recording polls this URL until a 404 (a deletion under way) before any write."""
    step = steps[index]
    if step["method"] != "GET" or step["status"] >= 400:
        return False
    for later in steps[index + 1 :]:
        if later["method"] != "GET":
            return False
        if later["path"] == step["path"] and later["status"] == 404:
            return True
    return False


def _is_state(path: str) -> bool:
    return path.rsplit(".", 1)[-1] in STATE_KEYS


@dataclass
class Replayer:
    """Sends a spec's steps: API steps to `api_url` with a token, Object Storage steps
    path-style to `s3_url`. `object_data(key)` gives the bytes of an uploaded object."""

    api_url: str
    s3_url: str
    project: str
    token: str
    object_data: Callable[[str], bytes]
    s3_region: str = "fr-par"
    variables: dict[str, str] = field(default_factory=dict)

    def run(self, spec: dict[str, Any]) -> list[Outcome]:
        self.variables = {"project": self.project}
        steps = spec["steps"]
        return [self.step(steps, index) for index in range(len(steps))]

    def _send(self, step: dict[str, Any]) -> requests.Response:
        path = _fill(step["path"], self.variables)
        query = [(k, v) for k, v in _fill(step["query"], self.variables)]
        if "s3_bucket" in step:
            data = b""
            if step["method"] == "PUT" and path == "/" and not query:
                data = CREATE_BUCKET.format(region=self.s3_region).encode()
            elif step["method"] == "PUT" and path != "/" and not query[1:]:
                data = self.object_data(path.lstrip("/"))
            return requests.request(
                step["method"],
                f"{self.s3_url}/{step['s3_bucket']}{path}",
                params=query,
                data=data,
                # moto serves every AWS service on one port and tells S3 by the credential
                # scope; it does not check the signature.
                headers={
                    "Authorization": "AWS4-HMAC-SHA256 Credential=SCWXXXXXXXXXXXXXXXXX/20260101/"
                    f"{self.s3_region}/s3/aws4_request, SignedHeaders=host, Signature=0",
                    # An ACL set by the canned header (a spec keeps no headers).
                    **({"x-amz-acl": "private"} if ("acl", "") in query else {}),
                },
                timeout=30,
            )
        body = step.get("body")
        return requests.request(
            step["method"],
            f"{self.api_url}{path}",
            params=query,
            json=_fill(body, self.variables) if body is not None else None,
            headers={"X-Auth-Token": self.token},
            timeout=30,
        )

    def _compare(
        self, steps: list[dict[str, Any]], index: int, answer: requests.Response
    ) -> list[str]:
        step = steps[index]
        problems = []
        if answer.status_code == 404 and _gone_later(steps, index):
            return []  # gone already: localcloud's transitions are shorter than Scaleway's
        if answer.status_code != step["status"]:
            problems.append(f"status {answer.status_code}, Scaleway {step['status']}")
        try:
            body = answer.json()
        except ValueError:
            body = None
        if "s3_bucket" in step:
            return problems  # Object Storage answers XML: the status is the fact
        for where, keys in step["keys"].items():
            try:
                part = _at(body, where)
            except KeyError:
                if where == "" or not where.endswith(".0"):
                    problems.append(f"no {where or 'body'}")
                continue
            if not isinstance(part, dict):
                problems.append(f"{where or 'body'} is not an object")
                continue
            missing = sorted(set(keys) - set(part))
            if missing:
                problems.append(f"{where or 'body'} lacks {', '.join(missing)}")
        for path, value in step["facts"].items():
            try:
                found = _at(body, path)
            except KeyError:
                if not re.search(r"\.\d+(\.|$)", path):
                    problems.append(f"no {path} (Scaleway {value!r})")
                continue
            wanted = _accepted(steps, index, path) if _is_state(path) else {value}
            if found not in wanted:
                problems.append(f"{path} {found!r}, Scaleway {value!r}")
        return problems

    def step(self, steps: list[dict[str, Any]], index: int) -> Outcome:
        step = steps[index]
        outcome = Outcome(index, step["method"], step["path"])
        try:
            answer = self._send(step)
            deadline = time.monotonic() + POLL_SECONDS
            while time.monotonic() < deadline:
                problems = self._compare(steps, index, answer)
                if not problems or not self._worth_again(step, answer, problems):
                    break
                time.sleep(0.1)
                answer = self._send(step)
        except Unbound as exc:
            outcome.problems.append(f"not replayed: {{{exc}}} comes from no earlier answer")
            return outcome
        outcome.problems = self._compare(steps, index, answer)
        for name, where in (step.get("bind") or {}).items():
            try:
                self.variables[name] = _bound(answer.json(), where)
            except (KeyError, ValueError):
                outcome.problems.append(f"cannot bind {name} from {where}")
        return outcome

    @staticmethod
    def _worth_again(step: dict[str, Any], answer: requests.Response, problems: list[str]) -> bool:
        """Poll a GET (a state to reach, or a deletion); send again a write refused in a
        transient state, or an update answered while the resource still settles."""
        state_problem = any(p.split(" ", 1)[0].rsplit(".", 1)[-1] in STATE_KEYS for p in problems)
        if step["method"] == "GET":
            if step["status"] == 404 and answer.status_code == 200:
                return True  # a deletion still under way
            return state_problem
        if step["method"] == "PATCH" and state_problem:
            return True
        if answer.status_code == 409 or (answer.status_code == 400 and "transient" in answer.text):
            return step["status"] < 400
        return False
