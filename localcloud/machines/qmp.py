"""A small QMP client: QEMU's JSON machine protocol over the VM's unix socket.

QMP interleaves command answers with asynchronous events (SHUTDOWN, RESET, DEVICE_DELETED,
BLOCK_JOB_COMPLETED, ...) on one stream, so a reader thread sorts lines: answers go to the
caller waiting on that command's id, events to a log that `wait_event` searches. Commands
are serialised (QMP answers in order anyway). End of stream means QEMU exited; every waiter
is woken with QMPClosed then.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class QMPError(RuntimeError):
    """QEMU answered a command with an error (`class` and `desc` of QMP's error object)."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        super().__init__(f"{command}: {error.get('class')}: {error.get('desc')}")
        self.error_class = error.get("class")


class QMPClosed(ConnectionError):
    """The socket closed: QEMU exited (or was killed)."""


class QMPClient:
    """One connection to one VM's QMP socket (QEMU accepts one client per socket)."""

    def __init__(self, path: Path | str, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(self.path)
        self.file = self.sock.makefile("rb")
        greeting = json.loads(self.file.readline() or b"null")
        if not isinstance(greeting, dict) or "QMP" not in greeting:
            self.sock.close()
            raise QMPClosed(f"no QMP greeting on {self.path}")
        self.sock.settimeout(None)
        self.greeting = greeting["QMP"]
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._seen = 0  # events ever received; `_events` holds the last ones
        self._closed = False
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True, name="qmp-reader")
        self._reader.start()
        self.execute("qmp_capabilities")

    # --- the reader ---------------------------------------------------------------------

    def _read(self) -> None:
        try:
            for line in self.file:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                with self._cond:
                    if "event" in message:
                        self._events.append(message)
                        self._seen += 1
                        if len(self._events) > 500:  # a long-lived VM must not grow unbounded
                            del self._events[:100]
                    elif isinstance(message.get("id"), int):
                        self._answers[message["id"]] = message
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- commands and events ------------------------------------------------------------

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 60.0
    ) -> Any:
        """Run one command; its `return` value. QMPError on an error answer, QMPClosed when
        QEMU goes away, TimeoutError when it does not answer in time."""
        with self._send_lock:
            with self._cond:
                if self._closed:
                    raise QMPClosed(f"QMP closed before {command}")
                self._next_id += 1
                ident = self._next_id
            message: dict[str, Any] = {"execute": command, "id": ident}
            if arguments:
                message["arguments"] = arguments
            try:
                self.sock.sendall(json.dumps(message).encode() + b"\n")
            except OSError as exc:
                raise QMPClosed(f"QMP closed during {command}") from exc
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._answers:
                if self._closed:
                    raise QMPClosed(f"QEMU exited during {command}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer to {command} within {timeout} s")
                self._cond.wait(left)
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise QMPError(command, answer["error"])
        return answer.get("return")

    def hmp(self, command_line: str) -> str:
        """A human monitor command (for what QMP lacks, e.g. hostfwd_add); its text output."""
        return str(self.execute("human-monitor-command", {"command-line": command_line}) or "")

    def mark(self) -> int:
        """A position in the event log; `wait_event(since=mark)` ignores older events."""
        with self._cond:
            return self._seen

    def _since(self, since: int) -> list[dict[str, Any]]:
        kept = len(self._events)
        return self._events[max(0, kept - (self._seen - since)) :]

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._since(since))

    def wait_event(
        self,
        name: str | tuple[str, ...],
        match: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 60.0,
        since: int = 0,
    ) -> dict[str, Any] | None:
        """The first event named `name` (or one of the names) with `match(data)` logged at or
        after `since`; None on timeout. Raises QMPClosed if QEMU exits first."""
        names = (name,) if isinstance(name, str) else name
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._since(since):
                    if event["event"] in names and (match is None or match(event.get("data", {}))):
                        return event
                if self._closed:
                    raise QMPClosed(f"QEMU exited while waiting for {name}")
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
