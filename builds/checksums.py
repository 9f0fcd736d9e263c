"""Parse the checksum files distributions publish next to their cloud images.

Three shapes exist (see docs in the shared reference notes, upstream-images.md, section 8):

- GNU (`sha256sum`/`sha512sum` output): `<hex>  <file>` or `<hex> *<file>`;
- BSD (`sha256sum --tag`): `SHA256 (<file>) = <hex>`, with `# <file>: N bytes` comments;
- BSD inside a PGP clearsigned block (Fedora).

Every parser returns `{filename: (algorithm, hexdigest)}` with lower-case algorithm names as
`hashlib` knows them (`sha256`, `sha512`, ...). File names are kept exactly as written so that
callers match them exactly: CentOS publishes names that differ by one token.
"""

from __future__ import annotations

import re

# The hash length tells the algorithm of a GNU line, which carries no name.
_GNU_LENGTHS = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}
_GNU_LINE = re.compile(r"^(?P<hex>[0-9a-fA-F]+) (?P<mode>[ *])(?P<name>.+)$")
_BSD_LINE = re.compile(
    r"^(?P<algo>MD5|SHA1|SHA224|SHA256|SHA384|SHA512) \((?P<name>.+)\) = (?P<hex>[0-9a-fA-F]+)$"
)

_BEGIN_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----"
_BEGIN_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"

Checksums = dict[str, tuple[str, str]]


class ChecksumError(ValueError):
    """A checksum file could not be read; the message says why in plain words."""


def parse_gnu(text: str) -> Checksums:
    """Parse `sha256sum`-style lines: `<hex>  <file>` (text) or `<hex> *<file>` (binary)."""
    result: Checksums = {}
    for line in _lines(text):
        match = _GNU_LINE.match(line)
        if not match:
            continue
        hexdigest = match["hex"].lower()
        algorithm = _GNU_LENGTHS.get(len(hexdigest))
        if algorithm is None:
            continue
        _add(result, match["name"], algorithm, hexdigest)
    return _non_empty(result, "GNU")


def parse_bsd(text: str) -> Checksums:
    """Parse `SHA256 (<file>) = <hex>` lines; `#` comment lines (sizes) are skipped."""
    result: Checksums = {}
    for line in _lines(text):
        match = _BSD_LINE.match(line)
        if not match:
            continue
        algorithm = match["algo"].lower()
        hexdigest = match["hex"].lower()
        if _GNU_LENGTHS.get(len(hexdigest)) != algorithm:
            raise ChecksumError(
                f"the {match['algo']} checksum of {match['name']} has {len(hexdigest)} hex digits, "
                "which is not the length of that algorithm"
            )
        _add(result, match["name"], algorithm, hexdigest)
    return _non_empty(result, "BSD")


def clearsigned_body(text: str) -> str:
    """Return the message of a PGP clearsigned text: armour stripped, dash-escaping undone.

    Only what the signature covers is returned: any text before the `BEGIN PGP SIGNED MESSAGE`
    line or after the signature is dropped, so a line slipped in outside the signed block is
    never parsed. This does not check the signature: see `builds.signatures`.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    starts = [i for i, line in enumerate(lines) if line.rstrip() == _BEGIN_SIGNED]
    if not starts:
        raise ChecksumError("the checksum file is not a PGP clearsigned message")
    if len(starts) > 1:
        # Two signed blocks in one file could show one message while another one is signed.
        raise ChecksumError("the checksum file holds more than one PGP signed message")
    i = starts[0] + 1
    # Armour headers ("Hash: SHA256") run until the first empty line.
    while i < len(lines) and lines[i].strip():
        if ":" not in lines[i]:
            raise ChecksumError("the PGP signed message has a malformed armour header")
        i += 1
    if i >= len(lines):
        raise ChecksumError("the PGP signed message has no body")
    body: list[str] = []
    for line in lines[i + 1 :]:
        if line.rstrip() == _BEGIN_SIGNATURE:
            break
        # RFC 4880 section 7.1: "- " in front of a line is dash-escaping, not content.
        body.append(line[2:] if line.startswith("- ") else line)
    else:
        raise ChecksumError("the PGP signed message has no signature block")
    # Trailing whitespace is not covered by a clearsigned signature, so it is dropped too.
    return "\n".join(line.rstrip() for line in body)


def parse(text: str, checksum_format: str) -> Checksums:
    """Parse a checksum file in one of `catalog.choices.ChecksumFormat`'s formats."""
    if checksum_format == "gnu":
        return parse_gnu(text)
    if checksum_format == "bsd":
        return parse_bsd(text)
    if checksum_format == "clearsigned-bsd":
        return parse_bsd(clearsigned_body(text))
    raise ChecksumError(f"unknown checksum format {checksum_format!r}")


def _lines(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _add(result: Checksums, name: str, algorithm: str, hexdigest: str) -> None:
    previous = result.get(name)
    if previous is not None and previous[0] == algorithm and previous[1] != hexdigest:
        raise ChecksumError(f"the checksum file lists {name} twice with different checksums")
    # A file listed with several algorithms keeps the strongest one.
    if previous is None or _strength(algorithm) > _strength(previous[0]):
        result[name] = (algorithm, hexdigest)


def _strength(algorithm: str) -> int:
    return next(length for length, name in _GNU_LENGTHS.items() if name == algorithm)


def _non_empty(result: Checksums, kind: str) -> Checksums:
    if not result:
        raise ChecksumError(f"no {kind} checksum lines found in the checksum file")
    return result
