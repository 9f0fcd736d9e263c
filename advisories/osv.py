"""Reading an OSV export: one zip of JSON records, read one record at a time.

Nothing here touches the database. `read_export` yields, for each record, either the
affected packages it brings (`AffectedPackage`) or a problem in plain words, so that one bad
record never stops the others. The archive as a whole is refused (`ExportError`) when it is
not a zip, is truncated, or would expand beyond the configured size (a zip bomb).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle import versions as orderings

SEVERITIES = ("unknown", "negligible", "low", "medium", "high", "critical")


class ExportError(Exception):
    """The export cannot be read at all; the message is shown to managers as is."""


@dataclass(frozen=True)
class AffectedPackage:
    """One affected package of one record, in one versioned ecosystem."""

    osv_id: str
    ecosystem: str
    package: str
    aliases: tuple[str, ...]
    severity: str
    summary: str
    published: dt.datetime | None
    modified: dt.datetime
    ranges: tuple[tuple[tuple[str, str], ...], ...]
    versions: tuple[str, ...] = ()


@dataclass
class RecordResult:
    """What one member of the archive gave: its packages wanted, or why it was skipped."""

    name: str
    packages: list[AffectedPackage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# --- one record -----------------------------------------------------------------------------


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 time as OSV writes it (`2024-01-02T03:04:05Z`), None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


_CVSS3_WEIGHTS = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}


def _roundup(value: float) -> float:
    """CVSS v3.1's Roundup: the smallest one-decimal number not below `value`."""
    whole = round(value * 100000)
    if whole % 10000 == 0:
        return whole / 100000.0
    return (math.floor(whole / 10000) + 1) / 10.0


def cvss3_score(vector: str) -> float | None:
    """The CVSS v3.x base score of a vector (`CVSS:3.1/AV:N/...`), None if it is not one."""
    if not vector.startswith("CVSS:3"):
        return None
    metrics = dict(part.split(":", 1) for part in vector.split("/")[1:] if ":" in part)
    try:
        scope_changed = metrics["S"] == "C"
        pr = {"N": 0.85, "L": 0.68 if scope_changed else 0.62, "H": 0.5 if scope_changed else 0.27}
        weights = {key: _CVSS3_WEIGHTS[key][metrics[key]] for key in _CVSS3_WEIGHTS}
        privileges = pr[metrics["PR"]]
    except KeyError:
        return None
    iss = 1 - (1 - weights["C"]) * (1 - weights["I"]) * (1 - weights["A"])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if scope_changed else 6.42 * iss
    exploitability = 8.22 * weights["AV"] * weights["AC"] * privileges * weights["UI"]
    if impact <= 0:
        return 0.0
    if scope_changed:
        return _roundup(min(1.08 * (impact + exploitability), 10))
    return _roundup(min(impact + exploitability, 10))


def _score_word(score: float) -> str:
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return "negligible"


def _word(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    word = value.strip().lower()
    word = {"important": "high", "moderate": "medium", "none": "negligible"}.get(word, word)
    return word if word in SEVERITIES else None


def severity_of(record: dict[str, Any], affected: dict[str, Any]) -> str:
    """The highest severity a record (or its affected entry) states, "unknown" if none.

    Distributions say it in different places: `severity[]` (a CVSS vector, or Ubuntu's own
    word), `database_specific.severity` or `ecosystem_specific.severity` (a word).
    """
    found: list[str] = []
    for entry in [*(record.get("severity") or []), *(affected.get("severity") or [])]:
        if not isinstance(entry, dict):
            continue
        score = entry.get("score")
        if isinstance(score, str) and str(entry.get("type", "")).startswith("CVSS_V3"):
            value = cvss3_score(score)
            if value is not None:
                found.append(_score_word(value))
                continue
        word = _word(score)
        if word:
            found.append(word)
    for holder in (record, affected):
        for key in ("database_specific", "ecosystem_specific"):
            specific = holder.get(key)
            if isinstance(specific, dict):
                word = _word(specific.get("severity") or specific.get("urgency"))
                if word:
                    found.append(word)
    return max(found, key=SEVERITIES.index) if found else "unknown"


def _events(
    raw_range: Any, scheme: str | None, where: str, problems: list[str]
) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(raw_range, dict) or not isinstance(raw_range.get("events"), list):
        problems.append(f"{where}: a range without events")
        return None
    if raw_range.get("type") not in ("ECOSYSTEM", None):
        # SEMVER and GIT ranges do not speak of distribution packages.
        return None
    events: list[tuple[str, str]] = []
    for event in raw_range["events"]:
        if not isinstance(event, dict) or len(event) != 1:
            problems.append(f"{where}: an event that is not one key and value: {event!r}")
            return None
        ((kind, value),) = event.items()
        if kind not in ("introduced", "fixed", "last_affected", "limit") or not isinstance(
            value, str
        ):
            problems.append(f"{where}: an unknown event {event!r}")
            return None
        if not (kind == "introduced" and value == "0") and not orderings.is_valid_version(value):
            problems.append(f"{where}: version {value!r} cannot be ordered; range skipped")
            return None
        events.append((kind, value))
    return tuple(events)


def parse_record(
    data: Any,
    name: str,
    *,
    export: str,
    wanted: Callable[[str, str], bool],
) -> RecordResult:
    """The affected packages of one record that `wanted(ecosystem, package)` asks for.

    Problems (a missing id or date, an affected entry of another export's ecosystem, a
    version the ordering cannot read) are reported for the record, never raised.
    """
    result = RecordResult(name=name)
    if not isinstance(data, dict):
        result.problems.append(f"{name}: not a JSON object")
        return result
    osv_id = data.get("id")
    modified = parse_time(data.get("modified"))
    if not isinstance(osv_id, str) or not osv_id or len(osv_id) > 128:
        result.problems.append(f"{name}: no usable id")
        return result
    if modified is None:
        result.problems.append(f"{osv_id}: no readable `modified` date")
        return result
    affected_list = data.get("affected")
    if not isinstance(affected_list, list):
        result.problems.append(f"{osv_id}: `affected` is not a list")
        return result
    aliases = tuple(a for a in data.get("aliases") or [] if isinstance(a, str))
    summary = data.get("summary") or data.get("details") or ""
    summary = summary if isinstance(summary, str) else ""
    for affected in affected_list:
        package = affected.get("package") if isinstance(affected, dict) else None
        if not isinstance(package, dict):
            result.problems.append(f"{osv_id}: an affected entry without a package")
            continue
        ecosystem, pkg_name = package.get("ecosystem"), package.get("name")
        if not isinstance(ecosystem, str) or not isinstance(pkg_name, str) or not pkg_name:
            result.problems.append(f"{osv_id}: an affected package without ecosystem or name")
            continue
        if ecosystem.split(":", 1)[0] != export:
            result.problems.append(
                f"{osv_id}: unknown ecosystem {ecosystem!r} in the {export} export"
            )
            continue
        if not wanted(ecosystem, pkg_name):
            continue
        scheme = orderings.scheme_for(export)
        where = f"{osv_id} {ecosystem} {pkg_name}"
        ranges = []
        for raw_range in affected.get("ranges") or []:
            events = _events(raw_range, scheme, where, result.problems)
            if events:
                ranges.append(events)
        listed = tuple(v for v in affected.get("versions") or [] if isinstance(v, str) and v)
        if not ranges and not listed:
            continue
        assert isinstance(affected, dict)
        result.packages.append(
            AffectedPackage(
                osv_id=osv_id,
                ecosystem=ecosystem,
                package=pkg_name,
                aliases=aliases,
                severity=severity_of(data, affected),
                summary=summary[:2000],
                published=parse_time(data.get("published")),
                modified=modified,
                ranges=tuple(ranges),
                versions=listed,
            )
        )
    return result


# --- the archive ----------------------------------------------------------------------------


def read_export(
    path: Path,
    *,
    export: str,
    wanted: Callable[[str, str], bool],
    max_total_bytes: int,
    max_record_bytes: int,
) -> Iterator[RecordResult]:
    """Each record of the zip at `path`, parsed, one at a time (never the archive whole).

    Raises ExportError before yielding anything when the file is not a readable zip or its
    members would expand beyond `max_total_bytes`; while reading, when a member turns out
    truncated or larger than it said.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExportError(f"the {export} export is not a readable zip (truncated?): {exc}") from exc
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        declared = sum(info.file_size for info in members)
        if declared > max_total_bytes:
            raise ExportError(
                f"the {export} export would expand to {declared:,} bytes, more than the "
                f"{max_total_bytes:,} allowed (OSV_MAX_UNCOMPRESSED_BYTES); not read"
            )
        read = 0
        for info in members:
            if not info.filename.endswith(".json"):
                continue
            if info.file_size > max_record_bytes:
                yield RecordResult(
                    name=info.filename,
                    problems=[f"{info.filename}: {info.file_size:,} bytes, over the record limit"],
                )
                continue
            try:
                with archive.open(info) as member:
                    raw = member.read(max_record_bytes + 1)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise ExportError(
                    f"the {export} export is damaged at {info.filename} (truncated?): {exc}"
                ) from exc
            read += len(raw)
            if len(raw) > max_record_bytes or read > max_total_bytes:
                raise ExportError(
                    f"the {export} export expands beyond what its directory declares "
                    f"(at {info.filename}); not read further"
                )
            try:
                data = json.loads(raw)
            except ValueError as exc:
                yield RecordResult(
                    name=info.filename, problems=[f"{info.filename}: not JSON ({exc})"]
                )
                continue
            yield parse_record(data, info.filename, export=export, wanted=wanted)
