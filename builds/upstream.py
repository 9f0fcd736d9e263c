"""Resolve an upstream channel to its current build: file name, URL, serial and digest.

The channel is a directory that always holds the latest build (e.g. Debian's `latest/`). Its
checksum file lists the files; `file_pattern` picks exactly one of them. When the source has
a signing key, the checksum file's signature is checked before anything in it is trusted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests

from builds import checksums, signatures
from builds.download import DownloadError, fetch_bytes

_LISTED = 20


class ResolveError(Exception):
    """The channel could not be resolved to one build; the message says why."""


@dataclass(frozen=True)
class SourceSpec:
    """What the fetch stage needs from an `UpstreamSource`, without the database."""

    channel_url: str
    file_pattern: str
    checksum_file: str
    checksum_format: str
    signature_file: str = ""
    signing_key: str = ""
    serial_pattern: str = ""

    @classmethod
    def from_model(cls, source: Any) -> SourceSpec:
        """Copy the fields of a `catalog.models.UpstreamSource` (or any look-alike)."""
        return cls(
            channel_url=source.channel_url,
            file_pattern=source.file_pattern,
            checksum_file=source.checksum_file,
            checksum_format=str(source.checksum_format),
            signature_file=source.signature_file or "",
            signing_key=source.signing_key or "",
            serial_pattern=source.serial_pattern or "",
        )

    def url_of(self, name: str) -> str:
        """The URL of a file in the channel directory."""
        base = self.channel_url if self.channel_url.endswith("/") else self.channel_url + "/"
        return urljoin(base, name)


@dataclass(frozen=True)
class Resolved:
    """The build a channel currently points at."""

    url: str
    filename: str
    serial: str
    algorithm: str
    expected_digest: str
    signed_by: str = ""


def resolve(
    spec: SourceSpec,
    *,
    allowed_hosts: Iterable[str],
    timeout: float = 60,
    session: requests.Session | None = None,
    verify: bool | str = True,
) -> Resolved:
    """Download, verify and parse the channel's checksum file; pick the one matching file."""
    allowed = list(allowed_hosts)
    try:
        pattern = re.compile(spec.file_pattern)
    except re.error as exc:
        raise ResolveError(f"the file pattern {spec.file_pattern!r} is not valid: {exc}") from exc
    checksum_url = spec.url_of(spec.checksum_file)
    try:
        raw = fetch_bytes(
            checksum_url, allowed_hosts=allowed, session=session, timeout=timeout, verify=verify
        )
    except DownloadError as exc:
        raise ResolveError(f"could not get the checksum file: {exc}") from exc

    signed_by = ""
    key = spec.signing_key.strip()
    try:
        if spec.checksum_format == "clearsigned-bsd" and key:
            # Parse what gpgv says the signature covers, not our own reading of the armour.
            signed_by, body = signatures.verify_clearsigned(raw, key)
            text = body.decode("utf-8", errors="replace")
            entries = checksums.parse_bsd(text)
        else:
            if spec.signature_file:
                if not key:
                    raise ResolveError("the source has a signature file but no signing key")
                sig = fetch_bytes(
                    spec.url_of(spec.signature_file),
                    allowed_hosts=allowed,
                    session=session,
                    timeout=timeout,
                    verify=verify,
                )
                signed_by = signatures.verify_detached(raw, sig, key)
            text = raw.decode("utf-8", errors="replace")
            entries = checksums.parse(text, spec.checksum_format)
            if spec.checksum_format == "clearsigned-bsd":
                text = checksums.clearsigned_body(text)
    except DownloadError as exc:
        raise ResolveError(f"could not get the signature file: {exc}") from exc
    except signatures.SignatureError as exc:
        raise ResolveError(f"the checksum file {checksum_url} failed verification: {exc}") from exc
    except checksums.ChecksumError as exc:
        raise ResolveError(f"could not read the checksum file {checksum_url}: {exc}") from exc

    matches = {name: m for name in entries if (m := pattern.fullmatch(name))}
    if len(matches) != 1:
        listed = sorted(matches) if matches else sorted(entries)
        shown = ", ".join(listed[:_LISTED]) + (" ..." if len(listed) > _LISTED else "")
        if matches:
            raise ResolveError(
                f"{len(matches)} files in {spec.checksum_file} match {spec.file_pattern!r}, "
                f"expected exactly one: {shown}"
            )
        raise ResolveError(
            f"no file in {spec.checksum_file} matches {spec.file_pattern!r}; it lists: {shown}"
        )
    filename, match = next(iter(matches.items()))
    algorithm, digest = entries[filename]
    return Resolved(
        url=spec.url_of(filename),
        filename=filename,
        serial=_serial(spec, match, text, digest),
        algorithm=algorithm,
        expected_digest=digest,
        signed_by=signed_by,
    )


def _serial(spec: SourceSpec, match: re.Match[str], text: str, digest: str) -> str:
    """From the file name's serial group, else serial_pattern in the file, else the hash."""
    if "serial" in match.re.groupindex and match["serial"]:
        return match["serial"]
    if spec.serial_pattern:
        try:
            found = re.search(spec.serial_pattern, text, re.MULTILINE)
        except re.error as exc:
            raise ResolveError(f"the serial pattern is not valid: {exc}") from exc
        if found:
            if "serial" in found.re.groupindex and found["serial"]:
                return found["serial"]
            return found[1] if found.re.groups else found[0]
    return digest[:12]
