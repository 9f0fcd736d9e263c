"""The HTTP layer: requests, responses, Scaleway-shaped errors, routing, pagination.

Handlers are plain functions `handler(cloud, request, **path_params) -> Response`. The real
API's quirks live here once: JSON errors always, bodies on GET and DELETE ignored, booleans
as `True`/`False`, repeated or comma-joined list parameters, `X-Total-Count` on instance
lists, empty pages past the end.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class ApiError(Exception):
    """An error answered as JSON, in the shape the real API uses."""

    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"type": type_, "message": message, **extra}


def not_found(resource: str, resource_id: str) -> ApiError:
    return ApiError(
        404, "not_found", "resource is not found", resource=resource, resource_id=resource_id
    )


def invalid_argument(name: str, reason: str = "required", help_message: str = "") -> ApiError:
    return ApiError(
        400,
        "invalid_arguments",
        "invalid argument(s)",
        details=[
            {
                "argument_name": name,
                "reason": reason,
                "help_message": help_message or "required key not provided",
            }
        ],
    )


def invalid_request(message: str) -> ApiError:
    """The legacy instance error type, also used for QCOW2 import refusals."""
    return ApiError(400, "invalid_request_error", message)


def transient_state(resource: str, resource_id: str, state: str) -> ApiError:
    return ApiError(
        409,
        "transient_state",
        f"resource {resource} with ID {resource_id} is in a transient state: {state}",
        resource=resource,
        resource_id=resource_id,
        current_state=state,
    )


@dataclass
class Request:
    """One HTTP request as handlers see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)
    operation: str = ""

    @classmethod
    def parse(cls, method: str, target: str, headers: dict[str, str], body: bytes) -> Request:
        parts = urlsplit(target)
        return cls(
            method=method.upper(),
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
        )

    def json(self) -> dict[str, Any]:
        """The JSON body of a write; GET and DELETE bodies ("{}" from the SDK) are ignored."""
        if self.method in ("GET", "DELETE", "HEAD") or not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "invalid_request_error", f"invalid JSON body: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request_error", "the body must be a JSON object")
        return data

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool | None = None) -> bool | None:
        value = self.arg(name)
        if value is None or value == "":
            return default
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise invalid_argument(name, "invalid_boolean", f"{value!r} is not a boolean")

    def int_arg(self, name: str, default: int, maximum: int | None = None) -> int:
        value = self.arg(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError as exc:
            raise invalid_argument(name, "invalid_int", f"{value!r} is not a number") from exc
        if number < 1 or (maximum is not None and number > maximum):
            raise invalid_argument(name, "out_of_range", f"must be between 1 and {maximum}")
        return number

    def list_arg(self, name: str) -> list[str]:
        """Repeated keys and comma-joined values (the SDK sends both) as one list."""
        items: list[str] = []
        for value in self.query.get(name, []):
            items.extend(v for v in value.split(",") if v)
        return items


@dataclass
class Response:
    """What a handler answers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None or self.status == 204:
            return b""
        return json.dumps(self.body, separators=(",", ":")).encode()


def ok(body: Any, status: int = 200, **headers: str) -> Response:
    return Response(status=status, body=body, headers=dict(headers))


def no_content() -> Response:
    return Response(status=204)


Handler = Callable[..., Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler
    public: bool


class Router:
    """Maps (method, path template) to handlers; `{name}` in a template is one path segment."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, public: bool = False) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template.rstrip("/") or "/")
        self.routes.append(
            Route(method.upper(), re.compile(f"^{regex}/?$"), template, handler, public)
        )

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        path_matched = False
        for route in self.routes:
            found = route.pattern.match(path)
            if not found:
                continue
            path_matched = True
            if route.method == method:
                return route, {k: unquote(v) for k, v in found.groupdict().items()}
        if path_matched:
            raise ApiError(405, "method_not_allowed", f"method {method} not allowed on {path}")
        raise ApiError(404, "not_found", f"no such API route: {method} {path}")


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError):
        return False
    return True


# --- pagination -------------------------------------------------------------------------------


def page_of_instance_list(
    request: Request, items: list[dict[str, Any]], key: str, base_path: str
) -> Response:
    """Instance v1 lists: `per_page` (max 100, default 50), the count only in X-Total-Count,
    a `Link` to the last page, and an empty list past the end (the SDK pages until one)."""
    per_page = request.int_arg("per_page", 50, maximum=100)
    page = request.int_arg("page", 1)
    total = len(items)
    chunk = items[(page - 1) * per_page : page * per_page]
    last = max(1, -(-total // per_page))
    headers = {
        "X-Total-Count": str(total),
        "Link": f'<{base_path}?page={last}&per_page={per_page}>; rel="last"',
    }
    return ok({key: chunk}, 200, **headers)


def page_of_list(
    request: Request, items: list[dict[str, Any]], key: str, default_size: int = 20
) -> Response:
    """Block, VPC, IPAM and Marketplace lists: `page_size` and `total_count` in the body."""
    size = request.int_arg("page_size", default_size, maximum=100)
    page = request.int_arg("page", 1)
    chunk = items[(page - 1) * size : page * size]
    return ok({key: chunk, "total_count": len(items)})
