"""Private network segments in user space: one learning Ethernet switch per Private Network,
with the network's own DHCP, DNS, ARP and ping answers, so that QEMU VMs get their IPAM
address and resolve `<server>.<private-network>.internal` as on Scaleway, without root.

Each VM's private NIC is a QEMU `-netdev stream` client of the segment's unix socket; the
stream carries every Ethernet frame as a 4-byte big-endian length and the frame, both ways.
The segment is the switch and, at the subnet's first host (`.1`, the address IPAM never
hands out), the network's infrastructure: it answers ARP for that address, DHCPv4 from the
NIC's IPAM lease, DNS on UDP port 53 and ICMP echo. Scaleway private networks have no
default route unless a Public Gateway is attached, so the DHCP answers carry no router.

A VM can also be the listening side (`server=on`) with the segment connecting to it through
`Segment.attach(path)`: QEMU 7.2's stream client never reconnects, while a listening QEMU
accepts again, so this way a segment that starts late or restarts reaches its VMs again.

One thread per segment runs a `selectors` loop over the listening socket and every port, so
many segments can share a process and a stalled VM cannot block the others: writes are
non-blocking into a bounded buffer per port, and frames beyond it are dropped as a real
switch would. Names outside `.internal` are looked up by the host resolver on a small worker
pool, because `getaddrinfo` may block for seconds. The wire formats are built and parsed
here with `struct`: the protocols used are few and small, and a dependency such as scapy
would weigh more than they do.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6
IP_ANY = b"\0\0\0\0"
IP_BROADCAST = b"\xff" * 4
PROTO_ICMP = 1
PROTO_UDP = 17

MAX_FRAME = 69632  # QEMU's NET_BUFSIZE: a larger length prefix means a desynchronised stream
OUTBUF_LIMIT = 4 << 20  # bytes queued for one port before its frames are dropped
MAC_AGE = 300.0  # seconds a learnt address stays valid without traffic from it
UNIX_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL, here and in QEMU
GARBAGE_LOG_INTERVAL = 5.0
MAX_PENDING_LOOKUPS = 64

DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
DHCP_COOKIE = b"\x63\x82\x53\x63"
DHCP_MIN_SIZE = 300  # BOOTP's minimum message; some clients drop anything shorter
LEASE_SECONDS = 3600
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
OPT_PAD, OPT_END = 0, 255
OPT_MASK, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN, OPT_BROADCAST = 1, 6, 12, 15, 28
OPT_REQUESTED_IP, OPT_LEASE, OPT_TYPE, OPT_SERVER_ID, OPT_MESSAGE = 50, 51, 53, 54, 56
OPT_RENEWAL, OPT_REBINDING, OPT_SEARCH = 58, 59, 119

DNS_PORT = 53
DNS_TTL = 60
DNS_MAX_UDP = 512
TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN = 0, 1, 2, 3


@dataclass(frozen=True)
class Lease:
    """What IPAM holds for one NIC: its IPv4 address and the name DHCP gives it."""

    ip: str
    hostname: str


class FrameError(ValueError):
    """A frame or message that does not parse: dropped, never fatal."""


# --- wire formats ------------------------------------------------------------------------------


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) used by IPv4, ICMP and UDP."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    """An IPv4 packet without options, TTL 64, don't-fragment, with its header checksum."""
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst
    )
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def udp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    """The UDP checksum over the pseudo-header; 0 is sent as 0xFFFF (0 means 'none')."""
    pseudo = src + dst + struct.pack("!BBH", 0, PROTO_UDP, len(segment))
    return checksum(pseudo + segment) or 0xFFFF


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP datagram inside its IPv4 packet, both checksums set."""
    segment = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = udp_checksum(src, dst, segment)
    return ipv4(src, dst, PROTO_UDP, segment[:6] + struct.pack("!H", csum) + segment[8:])


@dataclass
class IPv4Packet:
    src: bytes
    dst: bytes
    proto: int
    payload: bytes


def parse_ipv4(data: bytes) -> IPv4Packet:
    """Validate and split an IPv4 packet; fragments are refused (nothing here needs them)."""
    if len(data) < 20:
        raise FrameError("short IPv4 header")
    version_ihl, _, total, _, frag, _, proto, _, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", data[:20]
    )
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < 20 or total < ihl or total > len(data):
        raise FrameError("malformed IPv4 header")
    if checksum(data[:ihl]) != 0:
        raise FrameError("bad IPv4 header checksum")
    if frag & 0x3FFF:
        raise FrameError("IPv4 fragment")
    return IPv4Packet(src, dst, proto, data[ihl:total])


def parse_udp(packet: IPv4Packet) -> tuple[int, int, bytes]:
    """(source port, destination port, payload) after checking length and checksum."""
    data = packet.payload
    if len(data) < 8:
        raise FrameError("short UDP header")
    sport, dport, length, csum = struct.unpack("!HHHH", data[:8])
    if length < 8 or length > len(data):
        raise FrameError("bad UDP length")
    if csum and checksum(
        packet.src + packet.dst + struct.pack("!BBH", 0, PROTO_UDP, length) + data[:length]
    ):
        raise FrameError("bad UDP checksum")
    return sport, dport, data[8:length]


@dataclass
class DhcpMessage:
    op: int
    xid: int
    flags: int
    ciaddr: bytes
    chaddr: bytes
    options: dict[int, bytes]

    @property
    def type(self) -> int | None:
        value = self.options.get(OPT_TYPE)
        return value[0] if value and len(value) == 1 else None


def parse_dhcp(data: bytes) -> DhcpMessage:
    if len(data) < 240 or data[236:240] != DHCP_COOKIE:
        raise FrameError("not a DHCP message")
    op, htype, hlen, _, xid, _, flags = struct.unpack("!BBBBIHH", data[:12])
    if htype != 1 or hlen != 6:
        raise FrameError("DHCP for a non-Ethernet hardware address")
    options: dict[int, bytes] = {}
    i = 240
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            i += 1
            continue
        if i + 2 > len(data) or i + 2 + data[i + 1] > len(data):
            raise FrameError("truncated DHCP option")
        length = data[i + 1]
        options[code] = options.get(code, b"") + data[i + 2 : i + 2 + length]  # RFC 3396
        i += 2 + length
    return DhcpMessage(op, xid, flags, data[12:16], data[28:34], options)


def dhcp_reply(
    request: DhcpMessage, yiaddr: bytes, options: list[tuple[int, bytes]], ciaddr: bytes = IP_ANY
) -> bytes:
    """A BOOTREPLY echoing the request's transaction, padded to BOOTP's minimum size."""
    header = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        2,
        1,
        6,
        0,
        request.xid,
        0,
        request.flags,
        ciaddr,
        yiaddr,
        IP_ANY,
        IP_ANY,
        request.chaddr,
        b"",
        b"",
    )
    body = bytearray(header + DHCP_COOKIE)
    for code, value in options:
        if len(value) > 255:
            log.warning("DHCP option %d too long (%d bytes), left out", code, len(value))
            continue
        body += bytes((code, len(value))) + value
    body.append(OPT_END)
    body += b"\0" * max(0, DHCP_MIN_SIZE - len(body))
    return bytes(body)


def dns_name(name: str) -> bytes:
    """A domain name in DNS wire format (used for the DHCP domain search option)."""
    out = bytearray()
    for label in name.strip(".").split("."):
        if label:
            raw = label.encode("ascii", "ignore")[:63]
            out += bytes((len(raw),)) + raw
    return bytes(out + b"\0")


@dataclass
class DnsQuery:
    ident: int
    flags: int
    name: str  # without the trailing dot, as received (case kept)
    qtype: int
    qclass: int
    question: bytes  # the question section as received, echoed in the answer


def parse_dns_query(data: bytes) -> DnsQuery:
    if len(data) < 12:
        raise FrameError("short DNS header")
    ident, flags, qdcount = struct.unpack("!HHH", data[:6])
    if flags & 0x8000:
        raise FrameError("DNS response sent to the server")
    query = DnsQuery(ident, flags, "", 0, 0, b"")
    if qdcount != 1:
        raise DnsFormatError(query)
    labels = []
    i = 12
    while True:
        if i >= len(data):
            raise DnsFormatError(query)
        length = data[i]
        if length == 0:
            i += 1
            break
        if length > 63 or i + 1 + length > len(data):  # compression is not used in questions
            raise DnsFormatError(query)
        labels.append(data[i + 1 : i + 1 + length])
        i += 1 + length
    if i + 4 > len(data) or sum(len(label) + 1 for label in labels) > 254:
        raise DnsFormatError(query)
    qtype, qclass = struct.unpack("!HH", data[i : i + 4])
    name = ".".join(label.decode("ascii", "replace") for label in labels)
    return DnsQuery(ident, flags, name, qtype, qclass, data[12 : i + 4])


class DnsFormatError(FrameError):
    """A query whose header parsed but whose question did not: answered FORMERR."""

    def __init__(self, query: DnsQuery) -> None:
        super().__init__("malformed DNS question")
        self.query = query


def dns_response(
    query: DnsQuery, rcode: int, rdatas: Sequence[bytes] = (), authoritative: bool = False
) -> bytes:
    """An answer to `query`: the question echoed, each rdata as a record of its type."""
    flags = 0x8000 | (query.flags & 0x7900) | 0x0080 | rcode  # QR, opcode+RD kept, RA
    if authoritative:
        flags |= 0x0400
    qdcount = 1 if query.question else 0
    answers = b""
    count = 0
    for rdata in rdatas:
        record = b"\xc0\x0c" + struct.pack("!HHIH", query.qtype, CLASS_IN, DNS_TTL, len(rdata))
        if 12 + len(query.question) + len(answers) + len(record) + len(rdata) > DNS_MAX_UDP:
            break
        answers += record + rdata
        count += 1
    header = struct.pack("!HHHHHH", query.ident, flags, qdcount, count, 0, 0)
    return header + query.question + answers


# --- the segment -------------------------------------------------------------------------------


class _Port:
    """One connected VM NIC: its socket and the bytes not yet framed or not yet sent."""

    def __init__(self, sock: socket.socket, number: int, attached: str | None = None) -> None:
        self.sock = sock
        self.name = f"port{number}"
        self.attached = attached  # the QEMU server socket this port reconnects to
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.writing = False
        self.closed = False
        self.dropped = 0


class Segment:
    """One Private Network: a switch on a unix socket plus the network's own services."""

    def __init__(
        self,
        socket_path: Path,
        subnet: str,
        lookup: Callable[[str], Lease | None],
        resolve: Callable[[str], str | None],
        domain: str,
        *,
        upstream: bool = True,
    ) -> None:
        """`upstream=False` answers SERVFAIL instead of asking the host's resolver about
        names outside `.internal` (an isolated network, or tests that must stay offline)."""
        self.socket_path = Path(socket_path)
        if len(os.fsencode(self.socket_path)) > UNIX_PATH_MAX:
            raise ValueError(
                f"socket path longer than {UNIX_PATH_MAX} bytes (unix sockets cannot bind "
                f"or connect to it): {self.socket_path}"
            )
        self.network = ipaddress.IPv4Network(subnet, strict=False)
        if self.network.num_addresses < 4:
            raise ValueError(f"subnet {subnet} has no room for hosts")
        self.ip = str(self.network.network_address + 1)
        self._ip = ipaddress.IPv4Address(self.ip).packed
        self._broadcast = self.network.broadcast_address.packed
        # Locally administered and stable for a given network, so a restarted localcloud
        # answers with the MAC the guests already have in their ARP cache.
        digest = hashlib.sha256(f"{self.socket_path}|{self.network}".encode()).digest()
        self._mac = b"\x02" + digest[:5]
        self.mac = format_mac(self._mac)
        self.lookup = lookup
        self.resolve = resolve
        self.domain = domain.strip(".")
        self.upstream = upstream
        self._label = self.socket_path.stem or str(self.network)
        self._ports: list[_Port] = []
        self._macs: dict[bytes, tuple[_Port, float]] = {}
        self._next_port = 0
        self._pending: deque[bytes] = deque()  # frames from the lookup workers
        self._lookups = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._garbage = 0
        self._garbage_logged = 0.0
        self._commands: deque[tuple[str, str]] = deque()  # attach/detach from other threads
        self._attached: dict[str, _Port | None] = {}
        self._next_attempt = 0.0

    # --- public ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> dict[str, Any]:
        """Where QEMU's stream netdev connects: `addr.type=unix,addr.path=<path>`."""
        return {"type": "unix", "path": str(self.socket_path)}

    def qemu_netdev(self, netdev_id: str) -> str:
        """The `-netdev` argument connecting a VM NIC to this segment (commas escaped)."""
        path = str(self.socket_path).replace(",", ",,")
        return f"stream,id={netdev_id},server=off,addr.type=unix,addr.path={path}"

    @staticmethod
    def qemu_listening_netdev(netdev_id: str, path: Path) -> str:
        """The `-netdev` argument for a VM NIC that listens itself, for `attach(path)`."""
        escaped = str(path).replace(",", ",,")
        return f"stream,id={netdev_id},server=on,addr.type=unix,addr.path={escaped}"

    def attach(self, path: Path) -> None:
        """Connect to a NIC served by QEMU (`server=on`) at `path`, and reconnect whenever
        that connection ends, until `detach(path)`.

        QEMU 7.2's stream client never reconnects: a VM started before its segment, or
        running across a localcloud restart, keeps a dead NIC. A listening QEMU accepts a
        new connection at any time, so with this direction the segment can always come back.
        """
        where = str(path)
        if len(os.fsencode(where)) > UNIX_PATH_MAX:
            raise ValueError(f"socket path longer than {UNIX_PATH_MAX} bytes: {where}")
        self._commands.append(("attach", where))
        self._wake()

    def detach(self, path: Path) -> None:
        """Disconnect from an attached NIC and stop reconnecting to it."""
        self._commands.append(("detach", str(path)))
        self._wake()

    def start(self) -> None:
        """Listen on the socket and run the switch thread; returns at once."""
        if self._thread is not None:
            return
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            listener.listen(64)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._executor = ThreadPoolExecutor(2, thread_name_prefix=f"segment-dns-{self._label}")
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"segment-{self._label}", daemon=True
        )
        self._thread.start()
        log.info(
            "segment %s: %s on %s, gateway %s (%s)",
            self._label,
            self.network,
            self.socket_path,
            self.ip,
            self.mac,
        )

    def stop(self) -> None:
        """Disconnect every VM, stop the thread and remove the socket file."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake()
        thread.join(timeout=10)
        if thread.is_alive():
            log.error("segment %s: switch thread did not stop", self._label)
        self._thread = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # --- the switch loop ---------------------------------------------------------------------

    def _remove_stale_socket(self) -> None:
        """Unlink a socket file left by a dead process; refuse one that is still served."""
        if not self.socket_path.exists() and not self.socket_path.is_symlink():
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1)
        try:
            probe.connect(str(self.socket_path))
        except OSError:
            self.socket_path.unlink(missing_ok=True)
        else:
            raise RuntimeError(f"{self.socket_path} is served by another segment")
        finally:
            probe.close()

    def _wake(self) -> None:
        try:
            if self._wake_w is not None:
                self._wake_w.send(b"\0")
        except OSError:
            pass  # a full wake pipe already wakes the loop

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._run_commands()
                if self._attached and time.monotonic() >= self._next_attempt:
                    self._connect_attached()
                assert self._selector is not None
                try:
                    events = self._selector.select(timeout=0.5 if self._attached else 1.0)
                except (OSError, ValueError):
                    log.exception("segment %s: select failed", self._label)
                    time.sleep(0.1)
                    continue
                for key, mask in events:
                    self._event(key.data, mask)
        finally:
            self._close_all()

    def _event(self, what: object, mask: int) -> None:
        """One ready socket; any unexpected error only costs that port its connection."""
        try:
            if what == "listen":
                self._accept()
            elif what == "wake":
                self._drain_pending()
            elif isinstance(what, _Port) and not what.closed:
                if mask & selectors.EVENT_WRITE:
                    self._flush(what)
                if mask & selectors.EVENT_READ and not what.closed:
                    self._read(what)
        except Exception:
            log.exception("segment %s: unexpected error", self._label)
            if isinstance(what, _Port):
                self._drop_port(what, "error")

    def _close_all(self) -> None:
        for port in list(self._ports):
            self._drop_port(port, "segment stopped")
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._selector is not None:
            self._selector.close()
        self._listener = self._wake_r = self._wake_w = self._selector = None
        self.socket_path.unlink(missing_ok=True)
        log.info("segment %s: stopped", self._label)

    def _run_commands(self) -> None:
        while self._commands:
            command, path = self._commands.popleft()
            if command == "attach":
                if path not in self._attached:
                    self._attached[path] = None
                    self._next_attempt = 0.0
            else:
                port = self._attached.pop(path, None)
                if port is not None:
                    self._drop_port(port, "detached")

    def _connect_attached(self) -> None:
        """(Re)connect every attached NIC that has no connection; failures retry later."""
        self._next_attempt = time.monotonic() + 0.5
        for path, port in list(self._attached.items()):
            if port is not None:
                continue
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(0.2)
            try:
                sock.connect(path)
            except OSError as exc:
                sock.close()
                log.debug("segment %s: %s not reachable: %s", self._label, path, exc)
                continue
            sock.setblocking(False)
            self._next_port += 1
            port = _Port(sock, self._next_port, attached=path)
            self._ports.append(port)
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ, port)
            self._attached[path] = port
            log.info("segment %s: %s attached to %s", self._label, port.name, path)

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("segment %s: accept failed: %s", self._label, exc)
                return
            sock.setblocking(False)
            self._next_port += 1
            port = _Port(sock, self._next_port)
            self._ports.append(port)
            self._selector.register(sock, selectors.EVENT_READ, port)
            log.info("segment %s: %s connected", self._label, port.name)

    def _drop_port(self, port: _Port, reason: str) -> None:
        if port.closed:
            return
        port.closed = True
        with contextlib.suppress(KeyError, ValueError, AttributeError):
            if self._selector is not None:
                self._selector.unregister(port.sock)
        port.sock.close()
        if port in self._ports:
            self._ports.remove(port)
        for mac in [mac for mac, (owner, _) in self._macs.items() if owner is port]:
            del self._macs[mac]
        if port.attached and self._attached.get(port.attached) is port:
            self._attached[port.attached] = None  # reconnect on the next attempt
        log.info("segment %s: %s disconnected (%s)", self._label, port.name, reason)

    def _read(self, port: _Port) -> None:
        try:
            data = port.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop_port(port, str(exc))
            return
        if not data:
            self._drop_port(port, "closed by the VM")
            return
        port.inbuf += data
        while len(port.inbuf) >= 4:
            (length,) = struct.unpack_from("!I", port.inbuf)
            if length > MAX_FRAME:
                self._count_garbage(f"{port.name}: frame length {length}, stream out of sync")
                self._drop_port(port, "stream out of sync")
                return
            if len(port.inbuf) < 4 + length:
                break
            frame = bytes(port.inbuf[4 : 4 + length])
            del port.inbuf[: 4 + length]
            try:
                self._switch(port, frame)
            except FrameError as exc:
                self._count_garbage(f"{port.name}: {exc}")
            except Exception as exc:  # a bug for one frame must not cost the VM its link
                log.exception("segment %s: frame from %s failed", self._label, port.name)
                self._count_garbage(f"{port.name}: {exc!r}")
            if port.closed:
                return

    def _count_garbage(self, reason: str) -> None:
        """Log dropped frames without letting a flood of them flood the log."""
        self._garbage += 1
        now = time.monotonic()
        if now - self._garbage_logged >= GARBAGE_LOG_INTERVAL:
            log.warning(
                "segment %s: ignored %d malformed frame(s), last: %s",
                self._label,
                self._garbage,
                reason,
            )
            self._garbage = 0
            self._garbage_logged = now

    def _send(self, port: _Port, frame: bytes) -> None:
        if port.closed:
            return
        if len(port.outbuf) + 4 + len(frame) > OUTBUF_LIMIT:
            port.dropped += 1
            if port.dropped in (1, 100) or port.dropped % 10000 == 0:
                log.warning(
                    "segment %s: %s not reading, %d frame(s) dropped",
                    self._label,
                    port.name,
                    port.dropped,
                )
            return
        port.outbuf += struct.pack("!I", len(frame)) + frame
        if not port.writing:
            self._flush(port)

    def _flush(self, port: _Port) -> None:
        try:
            sent = port.sock.send(port.outbuf)
            del port.outbuf[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._drop_port(port, str(exc))
            return
        writing = bool(port.outbuf)
        if writing != port.writing:
            port.writing = writing
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
            assert self._selector is not None
            self._selector.modify(port.sock, events, port)

    def _port_of(self, mac: bytes) -> _Port | None:
        entry = self._macs.get(mac)
        if entry is None:
            return None
        port, seen = entry
        if time.monotonic() - seen > MAC_AGE:
            del self._macs[mac]
            return None
        return port

    def _switch(self, port: _Port, frame: bytes) -> None:
        """Learn the source, then deliver: ours, flooded, or to the learnt port."""
        if len(frame) < 14:
            raise FrameError(f"runt frame of {len(frame)} bytes")
        dst, src = frame[:6], frame[6:12]
        if src[0] & 1:
            raise FrameError("multicast source address")
        if src == self._mac:
            raise FrameError("frame claims the segment's own MAC")
        self._macs[src] = (port, time.monotonic())
        if dst == self._mac:
            self._local(frame)
        elif dst[0] & 1:
            for other in list(self._ports):
                if other is not port:
                    self._send(other, frame)
            self._local(frame)
        else:
            target = self._port_of(dst)
            if target is None:
                for other in list(self._ports):
                    if other is not port:
                        self._send(other, frame)
            elif target is not port:
                self._send(target, frame)

    def _emit(self, frame: bytes) -> None:
        """Send a frame of the segment's own: to the learnt port, or flooded."""
        dst = frame[:6]
        target = None if dst[0] & 1 else self._port_of(dst)
        if target is not None:
            self._send(target, frame)
        else:
            for port in list(self._ports):
                self._send(port, frame)

    def _drain_pending(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while self._pending:
            self._lookups -= 1
            self._emit(self._pending.popleft())

    # --- the network's own services ----------------------------------------------------------

    def _local(self, frame: bytes) -> None:
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        if ethertype == ETH_ARP:
            self._arp(frame)
        elif ethertype == ETH_IPV4:
            packet = parse_ipv4(frame[14:])
            if packet.dst == self._ip:
                if packet.proto == PROTO_ICMP:
                    self._icmp(frame, packet)
                elif packet.proto == PROTO_UDP:
                    self._udp(frame, packet)
            elif packet.dst in (IP_BROADCAST, self._broadcast) and packet.proto == PROTO_UDP:
                self._udp(frame, packet)

    def _arp(self, frame: bytes) -> None:
        arp = frame[14:42]
        if len(arp) < 28:
            raise FrameError("short ARP packet")
        htype, ptype, hlen, plen, oper = struct.unpack("!HHBBH", arp[:8])
        sha, spa, tpa = arp[8:14], arp[14:18], arp[24:28]
        if (htype, ptype, hlen, plen) != (1, ETH_IPV4, 6, 4):
            raise FrameError("ARP for something else than IPv4 over Ethernet")
        if oper != 1 or tpa != self._ip or spa == self._ip:
            return
        reply = struct.pack("!HHBBH", 1, ETH_IPV4, 6, 4, 2) + self._mac + self._ip + sha + spa
        self._emit(ethernet(frame[6:12], self._mac, ETH_ARP, reply))

    def _icmp(self, frame: bytes, packet: IPv4Packet) -> None:
        message = packet.payload
        if len(message) < 8 or message[0] != 8:
            return
        if checksum(message):
            raise FrameError("bad ICMP checksum")
        reply = b"\0\0\0\0" + message[4:]
        reply = reply[:2] + struct.pack("!H", checksum(reply)) + reply[4:]
        self._emit(ethernet(frame[6:12], self._mac, ETH_IPV4, ipv4(self._ip, packet.src, 1, reply)))

    def _udp(self, frame: bytes, packet: IPv4Packet) -> None:
        sport, dport, payload = parse_udp(packet)
        if dport == DHCP_SERVER_PORT:
            self._dhcp(payload)
        elif dport == DNS_PORT and packet.dst == self._ip:
            self._dns(frame[6:12], packet.src, sport, payload)

    # --- DHCP ---------------------------------------------------------------------------------

    def _lease(self, mac: bytes) -> Lease | None:
        try:
            lease = self.lookup(format_mac(mac))
        except Exception:
            log.exception("segment %s: lease lookup for %s failed", self._label, format_mac(mac))
            return None
        if lease is None:
            return None
        try:
            address = ipaddress.IPv4Address(lease.ip.split("/")[0])
        except ValueError:
            log.warning("segment %s: lease %r for %s is no IPv4", self._label, lease, mac.hex())
            return None
        if address not in self.network or address.packed in (self._ip, self._broadcast):
            log.warning("segment %s: lease %s is outside %s", self._label, address, self.network)
            return None
        return Lease(str(address), lease.hostname)

    def _dhcp(self, payload: bytes) -> None:
        msg = parse_dhcp(payload)
        if msg.op != 1:
            return
        lease = self._lease(msg.chaddr)
        mac = format_mac(msg.chaddr)
        if lease is None:
            log.debug("segment %s: DHCP from unknown %s ignored", self._label, mac)
            return
        leased = ipaddress.IPv4Address(lease.ip).packed
        server_id = msg.options.get(OPT_SERVER_ID)
        if msg.type == DISCOVER:
            self._dhcp_send(msg, OFFER, leased, self._lease_options(lease))
            log.info("segment %s: DHCPOFFER %s to %s", self._label, lease.ip, mac)
        elif msg.type == REQUEST:
            if server_id is not None and server_id != self._ip:
                return  # the client took another server's offer
            requested = msg.options.get(OPT_REQUESTED_IP) or (
                msg.ciaddr if msg.ciaddr != IP_ANY else None
            )
            if requested == leased:
                self._dhcp_send(msg, ACK, leased, self._lease_options(lease), ciaddr=msg.ciaddr)
                log.info("segment %s: DHCPACK %s to %s", self._label, lease.ip, mac)
            else:
                self._dhcp_send(msg, NAK, IP_ANY, [(OPT_MESSAGE, b"address not leased to you")])
                shown = socket.inet_ntoa(requested) if requested and len(requested) == 4 else "?"
                log.info("segment %s: DHCPNAK %s to %s", self._label, shown, mac)
        elif msg.type == INFORM:
            options = [
                o
                for o in self._lease_options(lease)
                if o[0] not in (OPT_LEASE, OPT_RENEWAL, OPT_REBINDING)
            ]
            self._dhcp_send(msg, ACK, IP_ANY, options, ciaddr=msg.ciaddr)
        elif msg.type in (DECLINE, RELEASE):
            log.info("segment %s: DHCP %s from %s", self._label, msg.type, mac)

    def _lease_options(self, lease: Lease) -> list[tuple[int, bytes]]:
        options = [
            (OPT_LEASE, struct.pack("!I", LEASE_SECONDS)),
            (OPT_RENEWAL, struct.pack("!I", LEASE_SECONDS // 2)),
            (OPT_REBINDING, struct.pack("!I", LEASE_SECONDS * 7 // 8)),
            (OPT_MASK, self.network.netmask.packed),
            (OPT_BROADCAST, self._broadcast),
            (OPT_DNS, self._ip),
        ]
        if self.domain:
            options.append((OPT_DOMAIN, self.domain.encode()))
            options.append((OPT_SEARCH, dns_name(self.domain)))
        if lease.hostname:
            options.append((OPT_HOSTNAME, lease.hostname.encode()))
        return options

    def _dhcp_send(
        self,
        request: DhcpMessage,
        kind: int,
        yiaddr: bytes,
        options: list[tuple[int, bytes]],
        ciaddr: bytes = IP_ANY,
    ) -> None:
        """Address the reply as RFC 2131 4.1 says for a server without relays."""
        head = [(OPT_TYPE, bytes((kind,))), (OPT_SERVER_ID, self._ip)]
        body = dhcp_reply(request, yiaddr, head + options, ciaddr)
        if kind == NAK or (request.flags & 0x8000 and request.ciaddr == IP_ANY):
            dst_mac, dst_ip = BROADCAST_MAC, IP_BROADCAST
        elif request.ciaddr != IP_ANY:
            dst_mac, dst_ip = request.chaddr, request.ciaddr
        else:
            dst_mac, dst_ip = request.chaddr, yiaddr
        packet = udp(self._ip, dst_ip, DHCP_SERVER_PORT, DHCP_CLIENT_PORT, body)
        self._emit(ethernet(dst_mac, self._mac, ETH_IPV4, packet))

    # --- DNS ----------------------------------------------------------------------------------

    def _dns(self, client_mac: bytes, client_ip: bytes, sport: int, payload: bytes) -> None:
        def reply(response: bytes) -> bytes:
            packet = udp(self._ip, client_ip, DNS_PORT, sport, response)
            return ethernet(client_mac, self._mac, ETH_IPV4, packet)

        try:
            query = parse_dns_query(payload)
        except DnsFormatError as exc:
            self._emit(reply(dns_response(exc.query, FORMERR)))
            return
        if (query.flags >> 11) & 0xF or query.qclass != CLASS_IN:
            self._emit(reply(dns_response(query, 4)))  # NOTIMP: only standard IN queries
            return
        answer = self._answer_locally(query)
        if answer is not None:
            self._emit(reply(answer))
            return
        if not self.upstream or self._lookups >= MAX_PENDING_LOOKUPS or self._executor is None:
            self._emit(reply(dns_response(query, SERVFAIL)))
            return
        self._lookups += 1

        def forward() -> None:
            try:
                response = self._forward(query)
            except Exception:
                log.exception("segment %s: forwarding %s failed", self._label, query.name)
                response = dns_response(query, SERVFAIL)
            self._pending.append(reply(response))
            self._wake()

        self._executor.submit(forward)

    def _answer_locally(self, query: DnsQuery) -> bytes | None:
        """Answers for `.internal` and this subnet's reverse zone; None to forward."""
        name = query.name.lower().rstrip(".")
        if name == "internal" or name.endswith(".internal"):
            try:
                address = self.resolve(name)
            except Exception:
                log.exception("segment %s: resolving %s failed", self._label, name)
                return dns_response(query, SERVFAIL)
            if address is None:
                return dns_response(query, NXDOMAIN, authoritative=True)
            if query.qtype == TYPE_A:
                rdata = ipaddress.IPv4Address(address.split("/")[0]).packed
                return dns_response(query, NOERROR, [rdata], authoritative=True)
            return dns_response(query, NOERROR, authoritative=True)  # AAAA and others: empty
        if name.endswith(".in-addr.arpa"):
            octets = name[: -len(".in-addr.arpa")].split(".")
            if len(octets) == 4 and all(o.isdigit() and int(o) < 256 for o in octets):
                reverse = ipaddress.IPv4Address(".".join(reversed(octets)))
                if reverse in self.network:
                    return dns_response(query, NXDOMAIN, authoritative=True)
        return None

    def _forward(self, query: DnsQuery) -> bytes:
        """A/AAAA for other names through the host's resolver; other types are not served."""
        families = {TYPE_A: socket.AF_INET, TYPE_AAAA: socket.AF_INET6}
        family = families.get(query.qtype)
        if family is None:
            return dns_response(query, SERVFAIL)
        try:
            infos = socket.getaddrinfo(query.name, None, family, socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
                other = socket.AF_INET if family == socket.AF_INET6 else socket.AF_INET6
                try:
                    socket.getaddrinfo(query.name, None, other, socket.SOCK_DGRAM)
                except OSError:
                    return dns_response(query, NXDOMAIN)
                return dns_response(query, NOERROR)  # the name exists, without this type
            return dns_response(query, SERVFAIL)
        except (OSError, UnicodeError):
            return dns_response(query, SERVFAIL)
        rdatas: list[bytes] = []
        for info in infos:
            rdata = socket.inet_pton(family, str(info[4][0]))
            if rdata not in rdatas:
                rdatas.append(rdata)
        return dns_response(query, NOERROR, rdatas)
