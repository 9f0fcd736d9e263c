"""Importing customers from a CSV file, all or nothing.

Columns: organization_id or project_id (at least one), name, email, language (en, fr or
empty for English). Every row is validated first; if any is rejected, nothing is imported
and each rejected line is reported with its number and reasons. A row whose project (or,
without a project, organization) is already known updates that customer. A row holding a NUL
character is refused (PostgreSQL cannot store one in text), and so is a file the csv module
cannot read (a field over its size limit, for example).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from lifecycle.models import Customer, Language

REQUIRED_COLUMNS = {"name", "email"}
ID_COLUMNS = ("organization_id", "project_id")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_ROWS = 200_000


@dataclass
class ImportResult:
    """What an import did, or why it did nothing."""

    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    return data.decode("utf-8-sig")


def _validate_row(line: int, row: dict[str, str], seen: dict[str, int]) -> list[str]:
    reasons = []
    with_nul = [column for column, value in row.items() if "\x00" in value]
    if with_nul:
        reasons.append(f"{', '.join(with_nul)} holds a NUL character")
    org = (row.get("organization_id") or "").strip().lower()
    project = (row.get("project_id") or "").strip().lower()
    if not org and not project:
        reasons.append("needs an organization_id or a project_id")
    for column, value in (("organization_id", org), ("project_id", project)):
        if value and not UUID_RE.match(value):
            reasons.append(f"{column} {value!r} is not a UUID")
    if not (row.get("name") or "").strip():
        reasons.append("name is empty")
    elif len(row["name"].strip()) > 200:
        reasons.append("name is longer than 200 characters")
    email = (row.get("email") or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        reasons.append(f"email {email!r} is not a valid address")
    language = (row.get("language") or "").strip().lower()
    if language and language not in Language.values:
        reasons.append(f"language {language!r} is not one of {', '.join(Language.values)}")
    key = f"p:{project}" if project else f"o:{org}"
    if (project or org) and key in seen:
        reasons.append(f"same {'project' if project else 'organization'} as line {seen[key]}")
    elif project or org:
        seen[key] = line
    return reasons


def _read_rows(reader: csv.DictReader, result: ImportResult) -> list[dict[str, str]]:
    """The valid rows; every rejected line goes to `result.errors` (csv.Error is raised)."""
    columns = {(name or "").strip() for name in reader.fieldnames or []}
    missing = REQUIRED_COLUMNS - columns
    if missing or not columns & set(ID_COLUMNS):
        wanted = sorted(missing) + ([] if columns & set(ID_COLUMNS) else ["project_id"])
        result.errors.append((1, f"missing column(s): {', '.join(wanted)}"))
        return []
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        row = {(k or "").strip(): (v or "") for k, v in raw.items() if k is not None}
        if None in raw:
            result.errors.append((line, "more fields than columns"))
            continue
        if not any(value.strip() for value in row.values()):
            continue
        if len(rows) >= MAX_ROWS:
            result.errors.append((line, f"more than {MAX_ROWS} rows"))
            break
        reasons = _validate_row(line, row, seen)
        if reasons:
            result.errors.append((line, "; ".join(reasons)))
        else:
            rows.append(row)
    return rows


def import_customers(data: bytes | str) -> ImportResult:
    """Validate every row, then import all of them in one transaction, or none."""
    result = ImportResult()
    try:
        text = _decode(data)
    except UnicodeDecodeError:
        result.errors.append((1, "the file is not UTF-8 text"))
        return result
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[dict[str, str]] = []
    try:
        rows = _read_rows(reader, result)
    except csv.Error as exc:
        result.errors.append((max(reader.line_num, 1), f"not readable as CSV: {exc}"))
    if result.errors:
        return result
    with transaction.atomic():
        by_project = {c.project_id: c for c in Customer.objects.exclude(project_id="")}
        by_org = {c.organization_id: c for c in Customer.objects.filter(project_id="")}
        for row in rows:
            org = row.get("organization_id", "").strip().lower()
            project = row.get("project_id", "").strip().lower()
            values = {
                "organization_id": org,
                "project_id": project,
                "name": row["name"].strip(),
                "email": row["email"].strip(),
                "language": row.get("language", "").strip().lower(),
            }
            existing = by_project.get(project) if project else by_org.get(org)
            if existing is None:
                Customer.objects.create(**values)
                result.created += 1
            else:
                for key, value in values.items():
                    setattr(existing, key, value)
                existing.save()
                result.updated += 1
    return result
