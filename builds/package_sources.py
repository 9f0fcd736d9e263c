"""Which source package each installed binary package was built from, as the guest's own
package database says.

libguestfs's inspection lists binary packages only (name, version, architecture). Debian and
Ubuntu advisories name source packages (``glibc``, not ``libc6``), and RPM advisories are
issued per source RPM too, so the customize stage asks the guest's package manager once, in
the chroot, with the query below, and this module turns its output into
``{(name, arch, version): (source, source_version)}`` and adds those two keys to inspection's
entries. Everything here is pure: no appliance, no database.

- dpkg: ``source:Package`` and ``source:Version`` are computed by dpkg-query (>= 1.16.2) from
  the ``Source:`` field, or are the binary's own name and version when it has none (a binNMU's
  ``+b1`` is dropped from the source version). ``binary:Package`` carries an architecture
  suffix (``libc6:amd64``) for Multi-Arch: same packages; the name kept is the bare one, as
  inspection has it. Packages not in the ``installed`` state (``config-files`` left by a
  removal) are skipped, as inspection skips them.
- rpm: ``SOURCERPM`` is a file name, ``glibc-2.34-100.el9_4.2.src.rpm``: the source name and
  its version-release are split off its end. It holds no epoch; ``(none)`` (gpg-pubkey) means
  no source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DPKG_QUERY = (
    "dpkg-query -W -f='${binary:Package}\\t${Architecture}\\t${Version}\\t${Status}"
    "\\t${source:Package}\\t${source:Version}\\n'"
)
RPM_QUERY = (
    "rpm -qa --qf '%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n'"
)
QUERIES = {"deb": DPKG_QUERY, "rpm": RPM_QUERY}

Key = tuple[str, str, str]  # (name, arch, version) as inspection writes them


@dataclass(frozen=True)
class QueryResult:
    """What one query's output says: the source of each package it could read, and how many
    lines it could not read (warnings on stderr, malformed lines)."""

    sources: dict[Key, tuple[str, str]]
    skipped: int = 0


def _rpm_none(value: str) -> bool:
    return value in ("", "(none)")


def parse_dpkg(lines: Iterable[str]) -> QueryResult:
    """Read the output of ``DPKG_QUERY``."""
    sources: dict[Key, tuple[str, str]] = {}
    skipped = 0
    for line in lines:
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 6:
            skipped += 1
            continue
        binary, arch, version, status, source, source_version = (f.strip() for f in fields)
        if status.split()[-1:] != ["installed"]:
            continue  # removed with its configuration kept, purged, half-installed, ...
        name, _, qualifier = binary.partition(":")
        if not name or not version or (qualifier and qualifier != arch):
            skipped += 1
            continue
        if source:
            sources[(name, arch, version)] = (source, source_version or version)
        else:
            skipped += 1  # dpkg older than 1.16.2: the virtual fields print nothing
    return QueryResult(sources, skipped)


def split_source_rpm(filename: str) -> tuple[str, str] | None:
    """``glibc-2.34-100.el9_4.2.src.rpm`` -> ``("glibc", "2.34-100.el9_4.2")``; None when the
    name is not a source RPM's."""
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            break
    else:
        return None
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        return None
    name, version, release = parts
    return name, f"{version}-{release}"


def rpm_version(epoch: str, version: str, release: str) -> str:
    """The version as inspection writes it: ``[epoch:]version-release``, no zero epoch."""
    full = f"{version}-{release}" if release and not _rpm_none(release) else version
    if not _rpm_none(epoch) and epoch != "0":
        full = f"{epoch}:{full}"
    return full


def parse_rpm(lines: Iterable[str]) -> QueryResult:
    """Read the output of ``RPM_QUERY``."""
    sources: dict[Key, tuple[str, str]] = {}
    skipped = 0
    for line in lines:
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 6:
            skipped += 1
            continue
        name, epoch, version, release, arch, source_rpm = (f.strip() for f in fields)
        if not name or not version:
            skipped += 1
            continue
        if _rpm_none(source_rpm):
            continue  # gpg-pubkey and other pseudo-packages: built from nothing
        source = split_source_rpm(source_rpm)
        if source is None:
            skipped += 1
            continue
        arch = "" if _rpm_none(arch) else arch
        sources[(name, arch, rpm_version(epoch, version, release))] = source
    return QueryResult(sources, skipped)


PARSERS = {"deb": parse_dpkg, "rpm": parse_rpm}


def with_sources(
    manifest: list[dict[str, str]], sources: dict[Key, tuple[str, str]]
) -> tuple[list[dict[str, str]], int]:
    """Inspection's ``manifest`` with ``source`` and ``source_version`` added to each entry
    the query knows (same name, architecture and version), and how many got them. Entries it
    does not know keep their three keys: their source is unknown, never guessed."""
    result: list[dict[str, str]] = []
    matched = 0
    for package in manifest:
        found = sources.get((package["name"], package.get("arch", ""), package["version"]))
        if found is None:
            result.append(dict(package))
            continue
        matched += 1
        result.append({**package, "source": found[0], "source_version": found[1]})
    return result, matched
