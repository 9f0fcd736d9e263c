"""SSH from the test host into booted servers: a fresh key per run and the `ssh` client.

The key is made with `ssh-keygen` in a private temporary folder and removed when the run
ends, so no key outlives the servers it opened. It reaches a server as an `AUTHORIZED_KEY=`
tag (spaces written as `_`, as Scaleway's metadata expects). Servers are new machines on
reused addresses, so host keys are neither checked nor remembered; BatchMode makes a
refused key an error instead of a password prompt.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

KEY_TAG_PREFIX = "AUTHORIZED_KEY="
SSH_ERROR_STATUS = 255  # what the ssh client exits with when it could not run the command


class SshTimeout(Exception):
    """A command did not finish within its deadline."""


@dataclass
class KeyPair:
    """A run's ed25519 key pair in its own temporary folder."""

    folder: Path
    private: Path
    public_line: str  # "ssh-ed25519 AAAA..." without a comment

    @property
    def tag(self) -> str:
        """The server tag that makes the metadata service hand this key to the guest."""
        return KEY_TAG_PREFIX + self.public_line.replace(" ", "_")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def new_key() -> KeyPair:
    """A fresh ed25519 key pair, with no passphrase and no comment."""
    folder = Path(tempfile.mkdtemp(prefix="factory-test-key-"))
    private = folder / "id_ed25519"
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(private)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        public = " ".join(private.with_suffix(".pub").read_text().split()[:2])
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return KeyPair(folder=folder, private=private, public_line=public)


@dataclass
class Result:
    """What a command printed and how it exited."""

    command: str
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def unreachable(self) -> bool:
        """The ssh client could not run the command at all (connection, key, host)."""
        return self.status == SSH_ERROR_STATUS

    def last_error(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.status}"


def command_line(
    key: KeyPair, host: str, port: int, user: str, command: str, connect_timeout: float
) -> list[str]:
    return [
        "ssh",
        "-i",
        str(key.private),
        "-p",
        str(port),
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={max(1, int(connect_timeout))}",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=3",
        "-F",
        "/dev/null",
        f"{user}@{host}",
        command,
    ]


def run(
    key: KeyPair,
    host: str,
    port: int,
    command: str,
    *,
    user: str = "root",
    timeout: float = 30.0,
    connect_timeout: float = 10.0,
) -> Result:
    """Run `command` in the guest; raises SshTimeout past `timeout` seconds."""
    try:
        done = subprocess.run(
            command_line(key, host, port, user, command, min(connect_timeout, timeout)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise SshTimeout(f"`{command}` did not finish within {timeout:g} s") from exc
    return Result(command=command, status=done.returncode, stdout=done.stdout, stderr=done.stderr)


def banner(host: str, port: int, timeout: float = 5.0) -> str | None:
    """The SSH server's greeting at host:port, or None when nothing answers with one.

    A bare TCP connect is not enough: a forwarding proxy may accept the connection and then
    close it; only a greeting proves the guest's sshd is reachable.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    return line if line.startswith("SSH-") else None


def trimmed(text: str, limit: int = 1500) -> str:
    """Output shortened for a log: its head and tail, with what was left out counted."""
    text = text.rstrip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... ({len(text) - 2 * half} characters left out) ...\n{text[-half:]}"
