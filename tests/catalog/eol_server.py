"""A real local HTTP server standing in for endoflife.date in tests.

A test sets the replies per path (status, body, headers, delay); each request to a path takes
the next reply and the last one repeats. Paths without a reply answer 404 with an HTML page,
as endoflife.date does. The `eol_server` fixture (tests/conftest.py) runs one per test.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "eol"

NOT_FOUND_PAGE = b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>"


def fixture_json(name: str) -> Any:
    """The parsed content of tests/catalog/fixtures/eol/<name>, for tests to alter."""
    return json.loads((FIXTURES / name).read_text())


@dataclass
class Reply:
    """One canned answer; a dict or list body is sent as JSON."""

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        """The body as bytes, with the Content-Type it implies."""
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/html; charset=utf-8"
        return self.body, "application/octet-stream"


class EolServer:
    """The server, its base URL and the paths it was asked for, in order."""

    def __init__(self) -> None:
        self._replies: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        # Set at shutdown so a delayed reply ends at once instead of holding the test run.
        self._stopping = threading.Event()
        self.requests: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # A short poll interval keeps each test's teardown (shutdown) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>, without a trailing slash."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, path: str, *replies: Reply) -> None:
        """Answer `path` with these replies in turn; the last one repeats."""
        with self._lock:
            self._replies[path] = list(replies)

    def reply_json(self, path: str, body: Any, status: int = 200, **extra: Any) -> None:
        """Answer `path` with one JSON document."""
        self.reply(path, Reply(status=status, body=body, **extra))

    def reply_fixture(self, path: str, name: str) -> None:
        """Answer `path` with a fixture file as it is on disk."""
        self.reply(
            path,
            Reply(
                body=(FIXTURES / name).read_bytes(), headers={"Content-Type": "application/json"}
            ),
        )

    def hits(self, path: str) -> int:
        """How many times `path` was requested."""
        return self.requests.count(path)

    def _next(self, path: str) -> Reply:
        with self._lock:
            self.requests.append(path)
            queue = self._replies.get(path)
            if not queue:
                return Reply(status=404, body=NOT_FOUND_PAGE, headers={"Content-Type": "text/html"})
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = server._next(urlsplit(self.path).path)
                if reply.delay and server._stopping.wait(reply.delay):
                    return
                body, content_type = reply.encoded()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": content_type, **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        return Handler

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Release delayed replies, stop serving and close the socket."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
