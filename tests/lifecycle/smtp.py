"""A real SMTP server for the notice tests: aiosmtpd on 127.0.0.1, a free port, recording.

It can refuse given recipients with a 4xx (a number of times, then accept) or a 5xx, and
slow every message down (so that a kill lands in the middle of a batch). The `smtp_server`
fixture (tests/conftest.py) starts one and points Django's SMTP backend at it.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"]).strip()

    def part(self, content_type: str) -> str:
        found = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        return found.get_content() if found is not None else ""


@dataclass
class RecordingHandler:
    """aiosmtpd handler: records messages, refuses recipients as configured."""

    received: list[Received] = field(default_factory=list)
    # address -> [code, times left (None: always)]
    refusals: dict[str, list[Any]] = field(default_factory=dict)
    delay: float = 0.0
    refused: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            rule = self.refusals.get(address.lower())
            if rule and (rule[1] is None or rule[1] > 0):
                if rule[1] is not None:
                    rule[1] -= 1
                self.refused[address.lower()] += 1
                code = rule[0]
                text = "Try again later" if 400 <= code < 500 else "No such user"
                return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class SMTPServer:
    """The running server and what it received."""

    def __init__(self) -> None:
        self.handler = RecordingHandler()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]

    def refuse(self, address: str, code: int, times: int | None = None) -> None:
        """Answer `code` to RCPT TO for `address`, `times` times (None: always)."""
        self.handler.refusals[address.lower()] = [code, times]

    def slow_down(self, seconds: float) -> None:
        self.handler.delay = seconds

    def count_by_recipient(self) -> Counter:
        return Counter(addr for r in self.received for addr in r.rcpt_tos)
