"""Verify OpenPGP signatures of checksum files with one given public key.

Verification runs `gpgv` against a throw-away keyring built from the armoured key with
`gpg --dearmor`, inside a temporary GNUPGHOME: the user's keyring is never read or written,
and no key other than the given one can make a signature pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

_ARMOUR_BLOCK = re.compile(
    r"-----BEGIN PGP PUBLIC KEY BLOCK-----.*?-----END PGP PUBLIC KEY BLOCK-----", re.DOTALL
)
_GPG_TIMEOUT = 120


class SignatureError(Exception):
    """A signature did not verify; the message says why in plain words."""


def verify_detached(data: bytes | Path, signature: bytes | Path, armoured_key: str) -> str:
    """Check a detached signature over `data`; return the signing key's fingerprint."""
    with tempfile.TemporaryDirectory(prefix="gpgv-") as tmp:
        home = Path(tmp)
        keyring = _keyring(home, armoured_key)
        data_path = _as_file(home / "data", data)
        sig_path = _as_file(home / "data.sig", signature)
        status, _ = _gpgv(home, keyring, [str(sig_path), str(data_path)])
        return _fingerprint(status)


def verify_clearsigned(message: bytes | Path, armoured_key: str) -> tuple[str, bytes]:
    """Check a clearsigned message; return (fingerprint, the signed text as gpgv extracted it).

    The returned bytes are exactly what the signature covers, so callers should parse those
    rather than their own reading of the armour.
    """
    with tempfile.TemporaryDirectory(prefix="gpgv-") as tmp:
        home = Path(tmp)
        keyring = _keyring(home, armoured_key)
        msg_path = _as_file(home / "message.asc", message)
        out_path = home / "message.txt"
        status, _ = _gpgv(home, keyring, ["--output", str(out_path), str(msg_path)])
        return _fingerprint(status), out_path.read_bytes()


def _as_file(path: Path, content: bytes | Path) -> Path:
    if isinstance(content, Path):
        return content
    path.write_bytes(content)
    return path


def _env(home: Path) -> dict[str, str]:
    # LC_ALL=C keeps gpg's messages in English; GNUPGHOME keeps it off the user's keyring.
    return {**os.environ, "GNUPGHOME": str(home), "LC_ALL": "C", "LANGUAGE": "C"}


def _keyring(home: Path, armoured_key: str) -> Path:
    """Turn the armoured key (one or several blocks) into a binary keyring for gpgv."""
    home.chmod(0o700)
    blocks = _ARMOUR_BLOCK.findall(armoured_key or "")
    if not blocks:
        raise SignatureError("the signing key is not an ASCII-armoured OpenPGP public key block")
    keyring = home / "trusted.gpg"
    with keyring.open("wb") as out:
        for block in blocks:
            try:
                proc = subprocess.run(
                    ["gpg", "--batch", "--quiet", "--homedir", str(home), "--dearmor"],
                    input=block.encode(),
                    capture_output=True,
                    env=_env(home),
                    timeout=_GPG_TIMEOUT,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise SignatureError("gpg is not installed on this machine") from exc
            if proc.returncode != 0 or not proc.stdout:
                raise SignatureError("the signing key could not be read (gpg --dearmor failed)")
            out.write(proc.stdout)
    return keyring


def _gpgv(home: Path, keyring: Path, args: list[str]) -> tuple[str, str]:
    try:
        proc = subprocess.run(
            ["gpgv", "--homedir", str(home), "--keyring", str(keyring), "--status-fd", "1", *args],
            capture_output=True,
            env=_env(home),
            timeout=_GPG_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SignatureError("gpgv is not installed on this machine") from exc
    except subprocess.TimeoutExpired as exc:
        raise SignatureError("gpgv did not finish verifying the signature") from exc
    status = proc.stdout.decode(errors="replace")
    stderr = proc.stderr.decode(errors="replace")
    codes = {line.split()[1] for line in status.splitlines() if line.startswith("[GNUPG:] ")}
    if proc.returncode == 0 and "VALIDSIG" in codes and "GOODSIG" in codes:
        return status, stderr
    raise SignatureError(_explain(codes, status))


def _explain(codes: set[str], status: str) -> str:
    if "BADSIG" in codes:
        return "bad signature: the file was changed after it was signed, or is not the signed file"
    errsig = _errsig_line(status).split()
    # ERRSIG <keyid> <pkalgo> <hashalgo> <class> <time> <rc>: rc 9 means "no public key".
    if "NO_PUBKEY" in codes or (len(errsig) > 7 and errsig[7] == "9"):
        key_id = errsig[2] if len(errsig) > 2 else "unknown"
        return f"the signature was made with key {key_id}, which is not the given signing key"
    if "EXPKEYSIG" in codes:
        return "the signing key has expired"
    if "REVKEYSIG" in codes:
        return "the signing key has been revoked"
    if "EXPSIG" in codes:
        return "the signature has expired"
    if "NODATA" in codes or "ERRSIG" in codes or not codes:
        return "not a valid OpenPGP signature"
    return "the signature could not be verified"


def _errsig_line(status: str) -> str:
    for line in status.splitlines():
        if line.startswith("[GNUPG:] ERRSIG"):
            return line
    return ""


def _fingerprint(status: str) -> str:
    for line in status.splitlines():
        if line.startswith("[GNUPG:] VALIDSIG "):
            return line.split()[2]
    return ""
