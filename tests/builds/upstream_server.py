"""A real local HTTP(S) server that plays an upstream mirror, with switchable faults.

Fixtures (tests/conftest.py): `upstream` (HTTP), `upstream_tls` (HTTPS with a self-signed
certificate made by openssl at test time), `gpg_key` (a throw-away ed25519 key, one per
session) and `qcow2_image` / `raw_image` (small generated disk images).

The server serves a folder, honours `Range: bytes=N-` / `bytes=N-M`, logs every request, and
can be told to misbehave: answer 404/500/503, reset the connection after N bytes, ignore
Range (answer 200), stall, or redirect.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

_RANGE = ("bytes=",)


@dataclass
class Fault:
    """One misbehaviour; `times` None means every request, else that many requests."""

    kind: str  # "404" | "500" | "503" | "reset" | "ignore-range" | "stall"
    after_bytes: int = 0
    times: int | None = None
    path: str | None = None


@dataclass
class RequestRecord:
    """One request the server saw."""

    path: str
    range: str | None
    status: int = 0


@dataclass
class _State:
    root: Path
    faults: list[Fault] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server_version = "upstream-test/1"
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: object) -> None:
        # Quiet: pytest would show every request of a 1 GiB benchmark otherwise.
        pass

    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        record = RequestRecord(path=path, range=self.headers.get("Range"))
        with state.lock:
            state.requests.append(record)
            fault = self._take_fault(state, path)
        if path in state.redirects:
            record.status = 302
            self.send_response(302)
            self.send_header("Location", state.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault and fault.kind in ("404", "500", "503"):
            record.status = int(fault.kind)
            self.send_error(int(fault.kind))
            return
        file = (state.root / path.lstrip("/")).resolve()
        if not file.is_file() or state.root.resolve() not in file.parents:
            record.status = 404
            self.send_error(404)
            return
        size = file.stat().st_size
        start, end = 0, size - 1
        status = 200
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith(_RANGE) and not (fault and fault.kind == "ignore-range"):
            first, _, last = wanted[len("bytes=") :].partition("-")
            start = int(first)
            end = int(last) if last else size - 1
            if start >= size:
                record.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, size - 1)
            status = 206
        record.status = status
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with file.open("rb") as f:
            if fault and fault.kind == "reset":
                self._send_then_reset(f, start, min(length, fault.after_bytes))
                return
            if fault and fault.kind == "stall":
                f.seek(start)
                self.wfile.write(f.read(min(length, fault.after_bytes)))
                self.wfile.flush()
                state.stop.wait(300)
                self.close_connection = True
                return
            if isinstance(self.connection, ssl.SSLSocket):
                f.seek(start)
                shutil.copyfileobj(f, self.wfile, 1024 * 1024)
            else:
                self.wfile.flush()
                self.connection.sendfile(f, start, length)

    def _take_fault(self, state: _State, path: str) -> Fault | None:
        for fault in state.faults:
            if fault.path and fault.path != path:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    state.faults.remove(fault)
            return fault
        return None

    def _send_then_reset(self, f: BinaryIO, start: int, count: int) -> None:
        f.seek(start)
        self.wfile.write(f.read(count))
        self.wfile.flush()
        # A RST throws away what is still in our send queue: wait until the client's kernel
        # has acknowledged every byte, so the client sees exactly `count` bytes, then reset.
        for _ in range(500):
            queued = struct.unpack("i", fcntl.ioctl(self.connection, termios.TIOCOUTQ, b"\0" * 4))
            if queued[0] == 0:
                break
            time.sleep(0.01)
        # SO_LINGER 0 turns close() into a TCP RST: the client sees "connection reset".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the socket was reset on purpose
            super().finish()


class UpstreamServer:
    """A running test server; `url(name)` gives a file's URL, `fail(...)` arms a fault."""

    def __init__(self, root: Path, tls_context: ssl.SSLContext | None = None) -> None:
        """Start serving `root` on 127.0.0.1 on a free port."""
        self.root = root
        self.state = _State(root=root)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.state = self.state  # type: ignore[attr-defined]
        scheme = "http"
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.port = self.httpd.server_address[1]
        self.host = "127.0.0.1"
        self.base = f"{scheme}://{self.host}:{self.port}/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, name: str = "") -> str:
        """The URL of `name` under the served folder."""
        return self.base + name.lstrip("/")

    def fail(
        self, kind: str, *, after_bytes: int = 0, times: int | None = None, path: str | None = None
    ) -> None:
        """Arm a fault for the next `times` requests (all if None), optionally one path only."""
        with self.state.lock:
            self.state.faults.append(Fault(kind, after_bytes, times, path))

    def redirect(self, path: str, location: str) -> None:
        """Answer 302 to `path` with this Location."""
        self.state.redirects[path if path.startswith("/") else "/" + path] = location

    def heal(self) -> None:
        """Drop every fault."""
        with self.state.lock:
            self.state.faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests seen so far, in order."""
        return list(self.state.requests)

    def requests_for(self, name: str) -> list[RequestRecord]:
        """Requests seen for one file."""
        return [r for r in self.state.requests if r.path == "/" + name.lstrip("/")]

    def close(self) -> None:
        """Stop the server and wake any stalled handler."""
        self.state.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def make_self_signed(folder: Path) -> tuple[Path, Path]:
    """Create a self-signed certificate for 127.0.0.1 with openssl; return (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class GpgKey:
    """A throw-away signing key in its own GNUPGHOME."""

    home: Path
    armoured: str
    fingerprint: str

    def _gpg(self, *args: str, data: bytes | None = None) -> bytes:
        env = {**os.environ, "GNUPGHOME": str(self.home)}
        proc = subprocess.run(
            ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", *args],
            input=data,
            capture_output=True,
            env=env,
            check=True,
        )
        return proc.stdout

    def detach_sign(self, data: bytes) -> bytes:
        """An armoured detached signature over `data`."""
        return self._gpg("--armor", "--detach-sign", "--output", "-", data=data)

    def clearsign(self, text: bytes) -> bytes:
        """`text` as a clearsigned message."""
        return self._gpg("--clearsign", "--output", "-", data=text)


def make_key(home: Path, uid: str) -> GpgKey:
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        check=True,
        capture_output=True,
        env=env,
    )
    armoured = subprocess.run(
        ["gpg", "--batch", "--armor", "--export", uid],
        check=True,
        capture_output=True,
        env=env,
        text=True,
    ).stdout
    listing = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--fingerprint", uid],
        check=True,
        capture_output=True,
        env=env,
        text=True,
    ).stdout
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")
    )
    return GpgKey(home=home, armoured=armoured, fingerprint=fingerprint)


def make_qcow2(path: Path, data_mib: int = 2) -> Path:
    """A small QCOW2 image with `data_mib` MiB of non-zero data written into it."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    if data_mib:
        subprocess.run(
            ["qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {data_mib}M", str(path)],
            check=True,
            capture_output=True,
        )
    return path


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, for assertions."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


LOCAL_DEMO_FILE = "debian-12-local-amd64.qcow2"


def local_demo_image(upstream: UpstreamServer, disk: Path, serial: str, motd: str):
    """Serve `disk` with a SHA256SUMS naming `serial` (as `make run`'s demo upstream does) and
    create the catalogue entry that builds from it, with a one-step recipe writing /etc/motd."""
    import shutil

    from catalog.choices import ChecksumFormat
    from catalog.models import RecipeStep, UpstreamSource
    from tests.catalog.factories import os_image

    shutil.copyfile(disk, upstream.root / LOCAL_DEMO_FILE)
    (upstream.root / "SHA256SUMS").write_text(
        f"# serial: {serial}\n{sha256_file(upstream.root / LOCAL_DEMO_FILE)}  {LOCAL_DEMO_FILE}\n"
    )
    image = os_image("debian_bookworm_local", channel=upstream.url())
    UpstreamSource.objects.filter(image=image).update(
        file_pattern=r"debian-12-local-amd64\.qcow2",
        checksum_file="SHA256SUMS",
        checksum_format=ChecksumFormat.GNU,
        serial_pattern=r"(?m)^# serial: (?P<serial>\S+)$",
    )
    RecipeStep.objects.create(
        image=image, position=1, type="write_file", params={"path": "/etc/motd", "content": motd}
    )
    return image
