"""localcloud.networks: a private network segment seen from its VMs.

The fast tests connect raw unix-socket clients speaking QEMU's stream framing and build
their frames with the small, separate encoder below, so a shared mistake in the segment's
own encoder cannot make both sides agree. The `vm` test boots two real QEMU guests (host
kernel, busybox initramfs) whose only NIC is on the segment: DHCP, ARP, ping between them
and `.internal` DNS are exercised by the guests' own stacks.
"""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localcloud.networks import Lease, Segment

SUBNET = "172.16.4.0/22"
GATEWAY = "172.16.4.1"
DOMAIN = "pn.internal"
MAC_A = "52:54:00:12:00:0a"
MAC_B = "52:54:00:12:00:0b"
MAC_C = "52:54:00:12:00:0c"
MAC_STRANGER = "52:54:00:12:00:ff"
LEASES = {
    MAC_A: Lease("172.16.4.10", "srv-a"),
    MAC_B: Lease("172.16.4.11", "srv-b"),
    MAC_C: Lease("172.16.4.12", "srv-c"),
}
NAMES = {f"{lease.hostname}.{DOMAIN}": lease.ip for lease in LEASES.values()}
BROADCAST = b"\xff" * 6
VM_MACS = {bytes.fromhex(m.replace(":", "")) for m in (MAC_A, MAC_B, MAC_C, MAC_STRANGER)}


# --- an independent little frame encoder/decoder -------------------------------------------


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def csum16(data: bytes) -> int:
    data = data + b"\0" * (len(data) & 1)
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total > 0xFFFF:
        total = (total >> 16) + (total & 0xFFFF)
    return 0xFFFF - total


def eth(dst: bytes, src: bytes, kind: int, payload: bytes) -> bytes:
    return dst + src + kind.to_bytes(2, "big") + payload


def ip4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    head = bytearray(20)
    head[0] = 0x45
    head[2:4] = (20 + len(payload)).to_bytes(2, "big")
    head[4:6] = (0x1234).to_bytes(2, "big")
    head[8] = 32
    head[9] = proto
    head[12:16] = src
    head[16:20] = dst
    head[10:12] = csum16(bytes(head)).to_bytes(2, "big")
    return bytes(head) + payload


def udp4(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    seg = bytearray(sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
    seg += length.to_bytes(2, "big") + b"\0\0" + payload
    value = csum16(src + dst + b"\0\x11" + length.to_bytes(2, "big") + bytes(seg)) or 0xFFFF
    seg[6:8] = value.to_bytes(2, "big")
    return ip4(src, dst, 17, bytes(seg))


def dhcp_request_frame(client: str, kind: int, xid: int, options: bytes = b"") -> bytes:
    """A client's DHCP message from 0.0.0.0:68 to the broadcast address."""
    boot = bytearray(236)
    boot[0:4] = b"\x01\x01\x06\x00"
    boot[4:8] = xid.to_bytes(4, "big")
    boot[28:34] = mac(client)
    body = bytes(boot) + b"\x63\x82\x53\x63" + bytes((53, 1, kind)) + options + b"\xff"
    packet = udp4(b"\0" * 4, b"\xff" * 4, 68, 67, body)
    return eth(BROADCAST, mac(client), 0x0800, packet)


def dns_query_frame(client: str, client_ip: str, name: str, qtype: int, ident: int) -> bytes:
    question = b"".join(bytes((len(p),)) + p.encode() for p in name.split(".")) + b"\0"
    msg = ident.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    msg += question + qtype.to_bytes(2, "big") + b"\x00\x01"
    packet = udp4(ip(client_ip), ip(GATEWAY), 40000 + ident % 1000, 53, msg)
    return eth(BROADCAST, mac(client), 0x0800, packet)  # gateway MAC unknown: flooded is fine


def arp_request_frame(client: str, client_ip: str, target: str) -> bytes:
    body = b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac(client) + ip(client_ip)
    body += b"\0" * 6 + ip(target)
    return eth(BROADCAST, mac(client), 0x0806, body)


def parse_ip_udp(frame: bytes) -> dict | None:
    """The IPv4/UDP fields of a segment's frame, checksums verified; None for other frames."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[6:12] in VM_MACS:
        return None
    head = frame[14:34]
    assert csum16(head) == 0, "IPv4 header checksum"
    total = int.from_bytes(head[2:4], "big")
    packet = frame[14 : 14 + total]
    if head[9] != 17:
        return {"proto": head[9], "src": head[12:16], "dst": head[16:20], "data": packet[20:]}
    seg = packet[20:]
    length = int.from_bytes(seg[4:6], "big")
    assert length == len(seg)
    pseudo = head[12:20] + b"\0\x11" + length.to_bytes(2, "big")
    assert int.from_bytes(seg[6:8], "big") != 0, "UDP checksum present"
    assert csum16(pseudo + seg) == 0, "UDP checksum"
    return {
        "proto": 17,
        "src": head[12:16],
        "dst": head[16:20],
        "sport": int.from_bytes(seg[0:2], "big"),
        "dport": int.from_bytes(seg[2:4], "big"),
        "data": seg[8:],
    }


def dhcp_fields(frame: bytes) -> dict | None:
    info = parse_ip_udp(frame)
    if not info or info.get("dport") != 68:
        return None
    data = info["data"]
    assert data[0] == 2 and data[236:240] == b"\x63\x82\x53\x63"
    options: dict[int, bytes] = {}
    i = 240
    while data[i] != 255:
        options[data[i]] = data[i + 2 : i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return {
        "ip": info,
        "xid": int.from_bytes(data[4:8], "big"),
        "yiaddr": str(ipaddress.IPv4Address(data[16:20])),
        "chaddr": data[28:34],
        "type": options[53][0],
        "options": options,
        "eth_dst": frame[:6],
    }


def dns_fields(frame: bytes) -> dict | None:
    info = parse_ip_udp(frame)
    if not info or info.get("sport") != 53:
        return None
    data = info["data"]
    ident, flags, questions, an = struct.unpack("!HHHH", data[:8])
    i = 12
    for _ in range(questions):
        while data[i]:
            i += 1 + data[i]
        i += 5
    answers = []
    for _ in range(an):
        assert data[i : i + 2] == b"\xc0\x0c"
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", data[i + 2 : i + 12])
        assert ttl > 0
        answers.append((rtype, data[i + 12 : i + 12 + rdlen]))
        i += 12 + rdlen
    return {"id": ident, "rcode": flags & 0xF, "aa": bool(flags & 0x400), "answers": answers}


class FakeNic:
    """One end of the stream netdev, as QEMU speaks it: length-prefixed Ethernet frames."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.buf = b""

    def send(self, frame: bytes) -> None:
        self.sock.settimeout(10)
        self.sock.sendall(struct.pack("!I", len(frame)) + frame)

    def send_raw(self, data: bytes) -> None:
        self.sock.settimeout(10)
        self.sock.sendall(data)

    def recv(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while len(self.buf) < 4 or len(self.buf) < 4 + struct.unpack("!I", self.buf[:4])[0]:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                raise ConnectionError(f"{self.name}: segment closed the connection")
            self.buf += chunk
        length = struct.unpack("!I", self.buf[:4])[0]
        frame, self.buf = self.buf[4 : 4 + length], self.buf[4 + length :]
        return frame

    def expect(self, match: Callable[[bytes], object], timeout: float = 5.0):
        """The first frame for which `match` returns something truthy (that value)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = self.recv(left)
            if frame is None:
                break
            found = match(frame)
            if found:
                return found
        raise AssertionError(f"{self.name}: expected frame not received")

    def quiet(self, match: Callable[[bytes], object], duration: float = 0.5) -> None:
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            frame = self.recv(left)
            if frame is not None:
                assert not match(frame), f"{self.name}: unexpected frame {frame[:42].hex()}"

    def close(self) -> None:
        self.sock.close()


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="seg-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def resolved() -> list[str]:
    return []


@pytest.fixture
def segment(short_dir: Path, resolved: list[str]) -> Iterator[Segment]:
    def resolve(name: str) -> str | None:
        resolved.append(name)
        return NAMES.get(name)

    seg = Segment(short_dir / "pn.sock", SUBNET, LEASES.get, resolve, DOMAIN)
    seg.start()
    yield seg
    seg.stop()


@pytest.fixture
def nics(segment: Segment) -> Iterator[Callable[[str], FakeNic]]:
    opened: list[FakeNic] = []

    def connect(name: str) -> FakeNic:
        nic = FakeNic(Path(segment.endpoint["path"]), name)
        opened.append(nic)
        return nic

    yield connect
    for nic in opened:
        nic.close()


def lease_dhcp(nic: FakeNic, client: str) -> dict:
    nic.send(dhcp_request_frame(client, 1, 7))
    offer = nic.expect(dhcp_fields)
    opts = b"\x32\x04" + ip(offer["yiaddr"]) + b"\x36\x04" + ip(GATEWAY)
    nic.send(dhcp_request_frame(client, 3, 8, opts))
    return nic.expect(dhcp_fields)


# --- tests without VMs -------------------------------------------------------------------------


def test_dhcp_discover_offer_request_ack(segment: Segment, nics) -> None:
    a, b = nics("a"), nics("b")
    assert segment.endpoint == {"type": "unix", "path": str(segment.socket_path)}
    a.send(dhcp_request_frame(MAC_A, 1, 0xABCD))
    offer = a.expect(dhcp_fields)
    assert offer["type"] == 2 and offer["xid"] == 0xABCD
    assert offer["yiaddr"] == "172.16.4.10" and offer["chaddr"] == mac(MAC_A)
    opts = offer["options"]
    assert opts[54] == ip(GATEWAY)  # server identifier: the subnet's first host
    assert opts[1] == ip("255.255.252.0")
    assert opts[6] == ip(GATEWAY)
    assert opts[15] == DOMAIN.encode()
    assert opts[12] == b"srv-a"
    assert struct.unpack("!I", opts[51])[0] == 3600
    assert 3 not in opts, "a private network has no default route"
    assert offer["ip"]["src"] == ip(GATEWAY) and offer["ip"]["sport"] == 67
    assert offer["eth_dst"] == mac(MAC_A)  # no broadcast flag: unicast to the client MAC

    request = b"\x32\x04" + ip("172.16.4.10") + b"\x36\x04" + ip(GATEWAY)
    a.send(dhcp_request_frame(MAC_A, 3, 0xABCE, request))
    ack = a.expect(dhcp_fields)
    assert ack["type"] == 5 and ack["xid"] == 0xABCE and ack["yiaddr"] == "172.16.4.10"
    assert ack["options"][12] == b"srv-a" and ack["options"][6] == ip(GATEWAY)
    assert 3 not in ack["options"]
    b.quiet(lambda f: dhcp_fields(f) and dhcp_fields(f)["chaddr"] == mac(MAC_A))


def test_dhcp_nak_and_unknown_mac(segment: Segment, nics) -> None:
    a = nics("a")
    wrong = b"\x32\x04" + ip("172.16.4.99")
    a.send(dhcp_request_frame(MAC_A, 3, 0x42, wrong))
    nak = a.expect(dhcp_fields)
    assert nak["type"] == 6 and nak["eth_dst"] == BROADCAST
    other_server = b"\x32\x04" + ip("172.16.4.10") + b"\x36\x04" + ip("172.16.4.254")
    a.send(dhcp_request_frame(MAC_A, 3, 0x43, other_server))
    a.send(dhcp_request_frame(MAC_STRANGER, 1, 0x44))
    a.quiet(dhcp_fields, 0.7)


def test_arp_and_ping_of_the_gateway(segment: Segment, nics) -> None:
    a, b = nics("a"), nics("b")
    a.send(arp_request_frame(MAC_A, "172.16.4.10", GATEWAY))

    def arp_reply(frame: bytes):
        if frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02":
            return frame

    reply = a.expect(arp_reply)
    gateway_mac = reply[22:28]
    assert gateway_mac == mac(segment.mac) and reply[28:32] == ip(GATEWAY)
    assert reply[32:38] == mac(MAC_A) and reply[38:42] == ip("172.16.4.10")
    assert reply[:6] == mac(MAC_A) and reply[6:12] == gateway_mac
    b.expect(lambda f: f[12:14] == b"\x08\x06")  # the request itself was flooded to b
    b.quiet(arp_reply)
    a.send(arp_request_frame(MAC_A, "172.16.4.10", "172.16.4.11"))  # not the segment's
    a.quiet(arp_reply)

    icmp = bytearray(b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"ping-payload" * 4)
    icmp[2:4] = csum16(bytes(icmp)).to_bytes(2, "big")
    a.send(eth(gateway_mac, mac(MAC_A), 0x0800, ip4(ip("172.16.4.10"), ip(GATEWAY), 1, icmp)))
    info = a.expect(lambda f: (i := parse_ip_udp(f)) and i["proto"] == 1 and i)
    assert info["src"] == ip(GATEWAY) and info["dst"] == ip("172.16.4.10")
    assert info["data"][0] == 0 and info["data"][4:] == bytes(icmp[4:])
    assert csum16(info["data"]) == 0


def test_learning_switch(segment: Segment, nics) -> None:
    a, b, c = nics("a"), nics("b"), nics("c")
    time.sleep(0.2)  # let the segment accept all three

    def tagged(tag: bytes):
        return lambda f: f[12:14] == b"\x88\xb5" and f[14:] == tag

    unknown = eth(mac(MAC_B), mac(MAC_A), 0x88B5, b"before-learning")
    a.send(unknown)
    b.expect(tagged(b"before-learning"))
    c.expect(tagged(b"before-learning"))  # unknown unicast is flooded
    a.quiet(tagged(b"before-learning"), 0.2)

    b.send(eth(BROADCAST, mac(MAC_B), 0x88B5, b"hello-from-b"))
    a.expect(tagged(b"hello-from-b"))
    c.expect(tagged(b"hello-from-b"))
    b.quiet(tagged(b"hello-from-b"), 0.2)

    a.send(eth(mac(MAC_B), mac(MAC_A), 0x88B5, b"after-learning"))
    b.expect(tagged(b"after-learning"))
    c.quiet(tagged(b"after-learning"))

    c.send(eth(b"\x33\x33\0\0\0\x01", mac(MAC_C), 0x86DD, b"multicast"))
    a.expect(lambda f: f.endswith(b"multicast"))
    b.expect(lambda f: f.endswith(b"multicast"))


def test_reconnecting_vm_does_not_disturb_others(segment: Segment, nics) -> None:
    a, b, c = nics("a"), nics("b"), nics("c")
    b.send(eth(BROADCAST, mac(MAC_B), 0x88B5, b"b-is-here"))
    c.send(eth(BROADCAST, mac(MAC_C), 0x88B5, b"c-is-here"))
    a.expect(lambda f: f.endswith(b"c-is-here"))
    b.close()  # b "reboots": its old connection goes away mid-conversation
    a.send(eth(mac(MAC_C), mac(MAC_A), 0x88B5, b"to-c"))
    c.expect(lambda f: f.endswith(b"to-c"))
    b2 = nics("b2")
    b2.send(eth(BROADCAST, mac(MAC_B), 0x88B5, b"b-is-back"))
    a.expect(lambda f: f.endswith(b"b-is-back"))
    a.send(eth(mac(MAC_B), mac(MAC_A), 0x88B5, b"to-new-b"))
    b2.expect(lambda f: f.endswith(b"to-new-b"))
    c.quiet(lambda f: f.endswith(b"to-new-b"))
    assert lease_dhcp(b2, MAC_B)["yiaddr"] == "172.16.4.11"


def test_dns(segment: Segment, nics, resolved: list[str]) -> None:
    a = nics("a")
    lease_dhcp(a, MAC_A)
    a.send(dns_query_frame(MAC_A, "172.16.4.10", "srv-b.pn.internal", 1, 1))
    answer = a.expect(dns_fields)
    assert answer["id"] == 1 and answer["rcode"] == 0 and answer["aa"]
    assert answer["answers"] == [(1, ip("172.16.4.11"))]
    assert "srv-b.pn.internal" in resolved

    a.send(dns_query_frame(MAC_A, "172.16.4.10", "SRV-C.pn.internal", 1, 2))
    assert a.expect(dns_fields)["answers"] == [(1, ip("172.16.4.12"))]

    a.send(dns_query_frame(MAC_A, "172.16.4.10", "nobody.pn.internal", 1, 3))
    unknown = a.expect(dns_fields)
    assert unknown["id"] == 3 and unknown["rcode"] == 3 and unknown["answers"] == []

    a.send(dns_query_frame(MAC_A, "172.16.4.10", "srv-b.pn.internal", 28, 4))
    aaaa = a.expect(dns_fields)
    assert aaaa["id"] == 4 and aaaa["rcode"] == 0 and aaaa["answers"] == []

    a.send(dns_query_frame(MAC_A, "172.16.4.10", "localhost", 1, 5))  # the host's resolver
    forwarded = a.expect(dns_fields)
    assert forwarded["id"] == 5 and forwarded["rcode"] == 0
    assert (1, ip("127.0.0.1")) in forwarded["answers"]


def test_garbage_does_not_kill_the_segment(segment: Segment, nics) -> None:
    a, b = nics("a"), nics("b")
    a.send(b"")  # empty frame
    a.send(b"\x01\x02\x03")  # runt
    a.send(os.urandom(1500))
    a.send(eth(BROADCAST, mac(MAC_A), 0x0800, b"\x45" + os.urandom(40)))  # bad IPv4
    good = dhcp_request_frame(MAC_A, 1, 9)
    a.send(good[:-60])  # truncated IPv4/UDP/DHCP
    bad_sum = bytearray(good)
    bad_sum[40] ^= 0xFF  # corrupt the UDP checksum
    a.send(bytes(bad_sum))
    a.send(eth(BROADCAST, mac(MAC_A), 0x0806, b"\x00\x01"))  # short ARP
    query = bytearray(dns_query_frame(MAC_A, "172.16.4.10", "x.pn.internal", 1, 6))
    a.send(bytes(query[:-3]))  # IP length now wrong
    pointer = dns_query_frame(MAC_A, "172.16.4.10", "x", 1, 7)
    head = pointer[:42]
    msg = pointer[42:54] + b"\xc0\x0c\x00\x01\x00\x01"  # a compression loop in the question
    a.send(head[:14] + udp4(ip("172.16.4.10"), ip(GATEWAY), 40007, 53, msg))
    formerr = a.expect(dns_fields)
    assert formerr["id"] == 7 and formerr["rcode"] == 1

    assert lease_dhcp(b, MAC_B)["type"] == 5, "the segment still serves after garbage"
    a.send(dhcp_request_frame(MAC_A, 1, 10))
    assert a.expect(dhcp_fields)["type"] == 2

    a.send_raw(b"\xff\xff\xff\xff" + b"junk")  # an absurd length: a is disconnected...
    with pytest.raises(ConnectionError):
        a.expect(lambda f: False, timeout=3)
    assert lease_dhcp(b, MAC_B)["type"] == 5  # ...and b is not


def test_fuzzed_frames(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Thousands of mutated DHCP/DNS/ARP frames, checksums often repaired so that the
    mutations reach the protocol parsers: no unexpected error, and service goes on."""
    seg = Segment(short_dir / "f.sock", SUBNET, LEASES.get, NAMES.get, DOMAIN, upstream=False)
    seg.start()
    nic = FakeNic(short_dir / "f.sock", "fuzz")
    rng = random.Random(20240607)
    seeds = [
        dhcp_request_frame(MAC_A, 1, 1),
        dhcp_request_frame(MAC_A, 3, 2, b"\x32\x04" + ip("172.16.4.10") + b"\x0c\x03abc"),
        dns_query_frame(MAC_A, "172.16.4.10", "srv-b.pn.internal", 1, 3),
        dns_query_frame(MAC_A, "172.16.4.10", "x.pn.internal", 28, 4),
        arp_request_frame(MAC_A, "172.16.4.10", GATEWAY),
    ]

    def mutate(data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(out) + 1)
            choice = rng.random()
            if choice < 0.5 and i < len(out):
                out[i] = rng.randrange(256)
            elif choice < 0.75:
                del out[i : i + rng.randint(1, 24)]
            else:
                out[i:i] = rng.randbytes(rng.randint(1, 24))
        return bytes(out)

    caplog.set_level("WARNING", logger="localcloud.networks")
    try:
        for n in range(5000):
            seed = rng.choice(seeds)
            if seed[12:14] == b"\x08\x00" and rng.random() < 0.7:
                body = mutate(seed[42:])
                sport, dport = struct.unpack("!HH", seed[34:38])
                frame = seed[:14] + udp4(seed[26:30], seed[30:34], sport, dport, body)
            else:
                frame = mutate(seed)
            nic.send(frame[:6] + mac(MAC_A) + frame[12:] if len(frame) >= 14 else frame)
            if n % 200 == 0:
                while nic.recv(0.01) is not None:
                    pass
        while nic.recv(0.3) is not None:
            pass
        assert lease_dhcp(nic, MAC_A)["type"] == 5
        nic.send(dns_query_frame(MAC_A, "172.16.4.10", "srv-b.pn.internal", 1, 99))
        assert nic.expect(lambda f: (d := dns_fields(f)) and d["id"] == 99 and d)["answers"]
    finally:
        nic.close()
        seg.stop()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("malformed" in r.getMessage() for r in caplog.records)


def test_many_segments_in_one_process(short_dir: Path) -> None:
    def make(name: str, subnet: str) -> Segment:
        leases = {MAC_A: Lease(str(ipaddress.ip_network(subnet)[5]), f"in-{name}")}
        return Segment(short_dir / f"{name}.sock", subnet, leases.get, lambda n: None, name)

    one, two = make("one", "10.8.0.0/24"), make("two", "192.168.50.0/24")
    one.start()
    two.start()
    try:
        assert one.mac != two.mac
        nic_one = FakeNic(short_dir / "one.sock", "one")
        nic_two = FakeNic(short_dir / "two.sock", "two")
        nic_one.send(dhcp_request_frame(MAC_A, 1, 1))
        offer = nic_one.expect(dhcp_fields)
        assert offer["yiaddr"] == "10.8.0.5" and offer["options"][54] == ip("10.8.0.1")
        nic_two.quiet(lambda f: True, 0.3)  # segments are isolated
        nic_two.send(dhcp_request_frame(MAC_A, 1, 2))
        assert nic_two.expect(dhcp_fields)["options"][12] == b"in-two"
        one.stop()
        assert not (short_dir / "one.sock").exists()
        with pytest.raises(ConnectionError):
            nic_one.expect(lambda f: False, timeout=3)
        nic_two.send(dhcp_request_frame(MAC_A, 1, 3))
        assert nic_two.expect(dhcp_fields)["yiaddr"] == "192.168.50.5"
        # A restart on the same path replaces the socket file left behind.
        one.start()
        assert stat.S_ISSOCK((short_dir / "one.sock").stat().st_mode)
    finally:
        one.stop()
        two.stop()
    assert not list(short_dir.glob("*.sock"))
    assert not [t for t in threading.enumerate() if t.name.startswith("segment-") and t.is_alive()]


def test_attach_to_a_listening_nic(segment: Segment, short_dir: Path) -> None:
    """The segment dials a NIC that listens (QEMU `server=on`) and redials after a drop."""
    path = short_dir / "vm-nic.sock"
    segment.attach(path)  # before anything listens there: retried
    time.sleep(0.8)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(5)

    def accepted() -> FakeNic:
        conn, _ = server.accept()
        nic = FakeNic.__new__(FakeNic)
        nic.name, nic.sock, nic.buf = "listening", conn, b""
        return nic

    try:
        nic = accepted()
        assert lease_dhcp(nic, MAC_C)["yiaddr"] == "172.16.4.12"
        nic.close()  # the VM's side ends the connection (QEMU restarted, say)
        nic = accepted()
        assert lease_dhcp(nic, MAC_C)["type"] == 5
        segment.detach(path)
        with pytest.raises(ConnectionError):
            nic.expect(lambda f: False, timeout=3)
        server.settimeout(1.5)
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


# --- two real VMs on one segment -------------------------------------------------------------

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /modules.order); do insmod /$m || echo "insmod $m failed"; done
ip link set lo up
peer=$(sed -n 's/.*nettest.peer=\([^ ]*\).*/\1/p' /proc/cmdline)
peername=$(sed -n 's/.*nettest.peername=\([^ ]*\).*/\1/p' /proc/cmdline)
n=0; while ! ip link show eth0 >/dev/null 2>&1 && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
ip link set eth0 up
t0=$(cut -d' ' -f1 /proc/uptime)
udhcpc -i eth0 -s /udhcpc.sh -q -n -t 10 -T 3 -O search -x hostname:ignored 2>&1
. /lease.env
t1=$(cut -d' ' -f1 /proc/uptime)
ping -c 1 -W 5 "$dns" >/dev/null 2>&1 && gw=ok || gw=fail
n=0; p=fail
while [ $n -lt 60 ]; do
  if ping -c 1 -W 2 "$peer" >/dev/null 2>&1; then p=ok; break; fi
  n=$((n+1))
done
out=$(nslookup "$peername.pn.internal" "$dns" 2>&1)
echo "$out" | grep -q "$peer" && d=ok || d=fail
miss=$(nslookup "missing.pn.internal" "$dns" 2>&1)
echo "$miss" | grep -qi "NXDOMAIN\|can't find" && nx=ok || nx=fail
short=$(nslookup "$peername" 2>&1)
echo "$short" | grep -q "$peer" && s=ok || s=fail
t2=$(cut -d' ' -f1 /proc/uptime)
echo "NETTEST-RESULT ip=$ip mask=$mask hostname=$hostname domain=$domain dns=$dns" \
  "router=${router:-none} gw=$gw ping=$p tries=$n resolve=$d nx=$nx search=$s" \
  "uptime_dhcp_start=$t0 uptime_leased=$t1 uptime_done=$t2"
echo "$out"
echo "$short"
sleep 3600
"""
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
  bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    hostname "$hostname"
    echo "search $domain" > /etc/resolv.conf
    echo "nameserver $dns" >> /etc/resolv.conf
    { echo "ip=$ip"; echo "mask=$mask"; echo "hostname=$hostname"; echo "domain=$domain";
      echo "dns=$dns"; echo "router=$router"; } > /lease.env
    ;;
esac
"""


class Cpio:
    """A newc archive written in Python, so device nodes need no root."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ino = 1

    def add(self, name: str, mode: int, body: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        fields = [self.ino, mode, 0, 0, 1, 0, len(body), 0, 0, rdev[0], rdev[1]]
        self.ino += 1
        header = "070701" + "".join(f"{v:08x}" for v in fields)
        header += f"{len(name) + 1:08x}00000000"
        self.data += header.encode() + name.encode() + b"\0"
        self.data += b"\0" * (-len(self.data) % 4)
        self.data += body
        self.data += b"\0" * (-len(self.data) % 4)

    def dir(self, name: str) -> None:
        self.add(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, body: bytes, mode: int = 0o755) -> None:
        self.add(name, stat.S_IFREG | mode, body)

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return bytes(self.data) + b"\0" * (-len(self.data) % 512)


def module_order(modules_dir: Path, wanted: list[str]) -> list[str]:
    """The .ko files for `wanted` and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        target, _, rest = line.partition(":")
        deps[target] = rest.split()
    by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in wanted:
        visit(by_name[name])
    return order


def build_initramfs(target: Path, release: str) -> None:
    busybox = shutil.which("busybox")
    modules_dir = Path("/lib/modules") / release
    archive = Cpio()
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "lib", "lib64", "lib/modules"):
        archive.dir(d)
    archive.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    archive.add("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3))
    archive.file("bin/busybox", Path(busybox).read_bytes())
    libs = subprocess.run(["ldd", busybox], capture_output=True, text=True, check=True).stdout
    made = {"lib", "lib64"}
    for line in libs.splitlines():
        parts = [p for p in line.split() if p.startswith("/")]
        if not parts:
            continue
        path = parts[0]
        parent = str(Path(path).parent).lstrip("/")
        for i in range(1, len(Path(parent).parts) + 1):
            sub = "/".join(Path(parent).parts[:i])
            if sub not in made:
                archive.dir(sub)
                made.add(sub)
        archive.file(path.lstrip("/"), Path(path).resolve().read_bytes())
    order = module_order(modules_dir, ["virtio_pci", "virtio_net"])
    names = []
    for rel in order:
        if rel.endswith((".xz", ".zst", ".gz")):
            pytest.skip(f"compressed module {rel}: busybox insmod cannot load it")
        name = f"lib/modules/{Path(rel).name}"
        archive.file(name, (modules_dir / rel).read_bytes(), 0o644)
        names.append(name)
    archive.file("modules.order", "\n".join(names).encode() + b"\n", 0o644)
    archive.file("init", INIT.encode())
    archive.file("udhcpc.sh", UDHCPC_SCRIPT.encode())
    target.write_bytes(archive.finish())


@pytest.mark.extra  # the private_networks check of the twelve proves it end to end
@pytest.mark.vm
def test_two_vms_dhcp_ping_and_dns(short_dir: Path) -> None:
    kernel = Path(f"/boot/vmlinuz-{os.uname().release}")
    if not kernel.exists():
        kernels = sorted(Path("/boot").glob("vmlinuz-*"))
        if not kernels:
            pytest.skip("no kernel in /boot")
        kernel = kernels[-1]
    release = kernel.name.removeprefix("vmlinuz-")
    if not (Path("/lib/modules") / release).exists() or not shutil.which("busybox"):
        pytest.skip("needs the kernel's modules and busybox")
    initrd = short_dir / "initrd.cpio"
    build_initramfs(initrd, release)

    def resolve(name: str) -> str | None:
        return NAMES.get(name)

    segment = Segment(short_dir / "pn.sock", SUBNET, LEASES.get, resolve, DOMAIN)
    segment.start()
    vms: dict[str, tuple[subprocess.Popen, Path, float]] = {}
    try:
        # a dials the segment (QEMU client); the segment dials b (QEMU listens, attach()).
        for name, own, peer in (("a", MAC_A, MAC_B), ("b", MAC_B, MAC_A)):
            listening = short_dir / f"{name}-nic.sock"
            netdev = (
                segment.qemu_netdev("p0")
                if name == "a"
                else Segment.qemu_listening_netdev("p0", listening)
            )
            console = short_dir / f"{name}.log"
            peer_lease = LEASES[peer]
            cmd = [
                "qemu-system-x86_64",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-smp",
                "1",
                "-m",
                "512",
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
                "-serial",
                f"file:{console}",
                "-kernel",
                str(kernel),
                "-initrd",
                str(initrd),
                "-append",
                f"console=ttyS0 panic=-1 quiet nettest.peer={peer_lease.ip} "
                f"nettest.peername={peer_lease.hostname}",
                "-netdev",
                netdev,
                "-device",
                f"virtio-net-pci,netdev=p0,mac={own}",
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            vms[name] = (proc, console, time.monotonic())
            if name == "b":
                segment.attach(listening)
        results: dict[str, str] = {}
        elapsed: dict[str, float] = {}
        deadline = time.monotonic() + 600
        while len(results) < 2 and time.monotonic() < deadline:
            for name, (proc, console, started) in vms.items():
                if name in results:
                    continue
                text = console.read_text(errors="replace") if console.exists() else ""
                for line in text.splitlines():
                    if line.startswith("NETTEST-RESULT"):
                        results[name] = line
                        elapsed[name] = time.monotonic() - started
                if proc.poll() is not None and name not in results:
                    output = proc.stdout.read().decode(errors="replace")
                    pytest.fail(f"VM {name} exited: {output}\n{text[-3000:]}")
            time.sleep(0.5)
        for name, (_, console, _) in vms.items():
            if name not in results:
                pytest.fail(f"VM {name}: no result\n{console.read_text(errors='replace')[-3000:]}")
        print(f"\nVM timings (s): {elapsed}")
        for name, own in (("a", MAC_A), ("b", MAC_B)):
            line = results[name]
            print(line)
            fields = dict(item.split("=", 1) for item in line.split()[1:])
            assert fields["ip"] == LEASES[own].ip and fields["mask"] == "22", line
            assert fields["hostname"] == LEASES[own].hostname and fields["domain"] == DOMAIN
            assert fields["router"] == "none", line
            assert fields["gw"] == "ok" and fields["ping"] == "ok", line
            assert fields["dns"] == GATEWAY, line
            assert fields["resolve"] == "ok" and fields["nx"] == "ok", line
            assert fields["search"] == "ok", line
    finally:
        for proc, _, _ in vms.values():
            proc.terminate()
        for proc, _, _ in vms.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        segment.stop()
