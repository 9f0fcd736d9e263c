"""OpenPGP verification with gpgv against a throw-away key made at test time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builds.signatures import SignatureError, verify_clearsigned, verify_detached
from tests.builds.upstream_server import GpgKey

# Fixtures from the shared test server module (tests/builds/conftest.py is not ours).

CHECKSUMS = b"SHA256 (a.qcow2) = " + b"ab" * 32 + b"\n"


def test_it_accepts_a_good_detached_signature(gpg_key: GpgKey) -> None:
    signature = gpg_key.detach_sign(CHECKSUMS)
    assert verify_detached(CHECKSUMS, signature, gpg_key.armoured) == gpg_key.fingerprint


def test_it_accepts_files_given_as_paths(gpg_key: GpgKey, tmp_path: Path) -> None:
    data, sig = tmp_path / "SHA256SUMS", tmp_path / "SHA256SUMS.gpg"
    data.write_bytes(CHECKSUMS)
    sig.write_bytes(gpg_key.detach_sign(CHECKSUMS))
    assert verify_detached(data, sig, gpg_key.armoured) == gpg_key.fingerprint


def test_it_refuses_a_changed_file(gpg_key: GpgKey) -> None:
    signature = gpg_key.detach_sign(CHECKSUMS)
    with pytest.raises(SignatureError, match=r"bad signature"):
        verify_detached(CHECKSUMS.replace(b"ab", b"cd", 1), signature, gpg_key.armoured)


def test_it_refuses_a_signature_by_another_key(
    gpg_key: GpgKey,
    other_gpg_key: GpgKey,
) -> None:
    signature = other_gpg_key.detach_sign(CHECKSUMS)
    with pytest.raises(SignatureError, match=r"not the given signing key"):
        verify_detached(CHECKSUMS, signature, gpg_key.armoured)


def test_it_refuses_a_garbage_signature(gpg_key: GpgKey) -> None:
    with pytest.raises(SignatureError, match=r"not a valid OpenPGP signature"):
        verify_detached(CHECKSUMS, b"<html>503</html>", gpg_key.armoured)


def test_it_refuses_a_garbage_key(gpg_key: GpgKey) -> None:
    signature = gpg_key.detach_sign(CHECKSUMS)
    with pytest.raises(SignatureError, match=r"not an ASCII-armoured"):
        verify_detached(CHECKSUMS, signature, "hello")


def test_it_returns_the_signed_text_of_a_clearsigned_file(gpg_key: GpgKey) -> None:
    text = b"- dash line\nSHA256 (a.qcow2) = " + b"ab" * 32 + b"\n"
    signed = gpg_key.clearsign(text)
    assert b"- - dash line" in signed  # gpg dash-escaped it
    fingerprint, body = verify_clearsigned(signed, gpg_key.armoured)
    assert fingerprint == gpg_key.fingerprint
    assert body.splitlines()[0] == b"- dash line"


def test_it_refuses_an_edited_clearsigned_file(gpg_key: GpgKey) -> None:
    signed = gpg_key.clearsign(CHECKSUMS).replace(b"= abab", b"= cdab")
    with pytest.raises(SignatureError, match=r"bad signature"):
        verify_clearsigned(signed, gpg_key.armoured)


def test_it_never_touches_the_users_keyring(
    gpg_key: GpgKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "user-gnupg"
    home.mkdir()
    monkeypatch.setenv("GNUPGHOME", str(home))
    verify_detached(CHECKSUMS, gpg_key.detach_sign(CHECKSUMS), gpg_key.armoured)
    assert os.listdir(home) == []
