"""A real local HTTP server standing in for the OSV bulk exports in tests, and the zips it
serves, built by the tests from records written in the OSV schema's shape.

Each path serves one `Export` (a zip's bytes and its ETag and Last-Modified) and answers a
matching If-None-Match with 304, as the export's storage does; a path can instead be given
a status or a delay. Requests are recorded with their conditional headers.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


def record(
    osv_id: str,
    ecosystem: str,
    package: str,
    fixed: str | None = "1.0-2",
    *,
    introduced: str = "0",
    modified: str = "2026-01-10T00:00:00Z",
    severity: list[dict[str, str]] | None = None,
    aliases: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One OSV record with one affected package and one ECOSYSTEM range."""
    events: list[dict[str, str]] = [{"introduced": introduced}]
    if fixed is not None:
        events.append({"fixed": fixed})
    data: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": osv_id,
        "modified": modified,
        "published": "2026-01-01T00:00:00Z",
        "aliases": list(aliases),
        "summary": f"{package}: a test vulnerability",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
            }
        ],
    }
    if severity is not None:
        data["severity"] = severity
    return data


def make_zip(records: list[dict[str, Any] | bytes | str]) -> bytes:
    """A zip holding one `<id>.json` per record (bytes or str written as they are)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n, item in enumerate(records):
            if isinstance(item, dict):
                archive.writestr(f"{item.get('id', n)}.json", json.dumps(item))
            else:
                archive.writestr(f"raw-{n}.json", item)
    return buffer.getvalue()


@dataclass
class Export:
    body: bytes
    etag: str = ""
    last_modified: str = "Sat, 10 Jan 2026 00:00:00 GMT"
    status: int = 200
    delay: float = 0.0


class OsvServer:
    def __init__(self) -> None:
        self.exports: dict[str, Export] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def serve(self, name: str, records: list[Any], *, etag: str = '"v1"', **extra: Any) -> None:
        """Serve a zip of `records` as the `name` export (`Debian`, `Rocky Linux`)."""
        self.exports[f"/{name}/all.zip"] = Export(make_zip(records), etag=etag, **extra)

    def serve_bytes(self, name: str, body: bytes, **extra: Any) -> None:
        self.exports[f"/{name}/all.zip"] = Export(body, **extra)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = unquote(urlsplit(self.path).path)
                condition = self.headers.get("If-None-Match")
                server.requests.append((path, condition))
                export = server.exports.get(path)
                if export is not None and export.delay and server._stopping.wait(export.delay):
                    return
                try:
                    if export is None or export.status != 200:
                        self.send_response(404 if export is None else export.status)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if export.etag and condition == export.etag:
                        self.send_response(304)
                        self.send_header("ETag", export.etag)
                        self.end_headers()
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "application/zip")
                    if export.etag:
                        self.send_header("ETag", export.etag)
                    self.send_header("Last-Modified", export.last_modified)
                    self.send_header("Content-Length", str(len(export.body)))
                    self.end_headers()
                    self.wfile.write(export.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
