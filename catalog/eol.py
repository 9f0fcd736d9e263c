"""The upstream end-of-life import from endoflife.date.

Two steps: `fetch_product` downloads one product and parses every release cycle into
`CycleDates`; `import_all` applies them to the OS images' `UpstreamLifecycle` rows.

endoflife.date has two APIs (see docs in upstream-images.md sections 9-11):
- v1 `/api/v1/products/<product>`: `{"result": {"releases": [...]}}`, each release with
  `releaseDate`, `isEoas`/`eoasFrom`, `isEol`/`eolFrom`, `isEoes`/`eoesFrom`. A `*From` is
  null when the underlying data is a boolean; the `is*` flag then carries the meaning.
- v0 `/api/<product>.json` (deprecated, used only when v1 answers 404): a bare list where
  `eol` is a date or a boolean (true = EOL reached) and `support`/`extendedSupport` are a date
  or an *inverted* boolean (true = still supported).

Nothing stored is ever lost: a failed fetch only records the failure on the rows, a boolean
or a missing value never clears a stored date, a manager's date is never overwritten, and an
EOL that moves backwards waits for a manager: it is stored as the row's proposed EOL, which
the home page lists with accept and reject actions (`accept_proposal`, `reject_proposal`).
A rejected date is not proposed again; a later import that no longer moves the EOL backwards
withdraws the proposal.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import errno
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog import audit, dates
from catalog.choices import DateSource, ImageKind
from catalog.models import UpstreamLifecycle

logger = logging.getLogger("catalog.eol")

AUDIT_ACTION = "eol.import"

# The longest Retry-After a 429 is honoured for before giving up; the daily schedule retries
# tomorrow anyway, so an import never blocks a worker for long.
DEFAULT_MAX_RETRY_WAIT = 10.0

# date.fromisoformat() also accepts 20240425 and 2024-W17-4; the API only ever sends this.
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Model field -> (v1 date key, v1 flag key). The flag says "this end is reached".
_V1_KEYS: dict[str, tuple[str, str | None]] = {
    "release_date": ("releaseDate", None),
    "active_support_end": ("eoasFrom", "isEoas"),
    "security_support_end": ("eolFrom", "isEol"),
    "extended_support_end": ("eoesFrom", "isEoes"),
}

# Model field -> (v0 key, whether a boolean there is inverted: true = still supported).
_V0_KEYS: dict[str, tuple[str, bool | None]] = {
    "release_date": ("releaseDate", None),
    "active_support_end": ("support", True),
    "security_support_end": ("eol", False),
    "extended_support_end": ("extendedSupport", True),
}

_FLAG_OF = {
    "active_support_end": "is_eoas",
    "security_support_end": "is_eol",
    "extended_support_end": "is_eoes",
}

# Words for messages: the import's report is read by catalogue managers.
_LABEL = {
    "release_date": "release date",
    "active_support_end": "end of active support",
    "security_support_end": "EOL",
    "extended_support_end": "end of extended support",
}


class EolFetchError(Exception):
    """A product could not be fetched or read; the message is shown to managers as is."""


@dataclass(frozen=True)
class CycleDates:
    """The dates endoflife.date gives for one release cycle, and its raw booleans.

    The flags are normalised to the v1 meaning whatever the API: True = that end is reached
    (so a v0 `support: true` becomes `is_eoas=False`), None = not given. A date is None when
    the API gives a boolean or nothing. `problems` lists values that could not be read (a
    boolean where a date is expected, a string that is not a date); a cycle with problems
    is not applied at all. A date outside `catalog.dates`' range is such a problem.
    """

    cycle: str
    release_date: dt.date | None = None
    active_support_end: dt.date | None = None
    security_support_end: dt.date | None = None
    extended_support_end: dt.date | None = None
    is_eoas: bool | None = None
    is_eol: bool | None = None
    is_eoes: bool | None = None
    api: str = "v1"
    problems: tuple[str, ...] = ()

    def date_of(self, field_name: str) -> dt.date | None:
        """The date for a model field name (`security_support_end`, ...)."""
        return getattr(self, field_name)

    def flag_of(self, field_name: str) -> bool | None:
        """The "end reached" flag that goes with a model date field, if any."""
        flag = _FLAG_OF.get(field_name)
        return getattr(self, flag) if flag else None


@dataclass
class ImageChange:
    """What the import did to one image's lifecycle row.

    `changes` maps each date field that changed to (before, after); `notes` are things worth
    knowing (a manager's date kept, EOL reached without a date); `warnings` need a manager.
    """

    image: str
    cycle: str
    ok: bool
    message: str
    changes: dict[str, tuple[dt.date | None, dt.date | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ProductResult:
    """The outcome of importing one endoflife.date product, with one entry per image."""

    product: str
    ok: bool
    message: str
    changes: list[ImageChange] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- Fetching and parsing -------------------------------------------------------------------


def fetch_product(
    base_url: str,
    product: str,
    timeout: float,
    *,
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
) -> dict[str, CycleDates]:
    """Every release cycle of `product`, by cycle name, from the v1 API or else legacy v0.

    v0 is asked only when v1 answers 404. Redirects are followed. A 429 is retried once if
    its Retry-After is at most `max_retry_wait` seconds. Raises `EolFetchError` with a
    message for managers on any network, HTTP, JSON or shape problem, and when the product
    has no releases. Problems inside one release are kept in its `CycleDates.problems`
    so that a bad old cycle does not block the cycles in use.
    """
    base = base_url.rstrip("/")
    slug = quote(product, safe="")
    with requests.Session() as session:
        session.headers.update(
            {"Accept": "application/json", "User-Agent": "image-factory-eol-import/1"}
        )
        v1_url = f"{base}/api/v1/products/{slug}"
        response = _get(session, v1_url, timeout, max_retry_wait)
        if response.status_code != 404:
            _raise_for_status(response, v1_url)
            return _parse_v1(product, _json(response, v1_url))
        v0_url = f"{base}/api/{slug}.json"
        logger.warning("%s answered 404; trying the deprecated v0 API at %s", v1_url, v0_url)
        response = _get(session, v0_url, timeout, max_retry_wait)
        if response.status_code == 404:
            raise EolFetchError(
                f"unknown product {product!r}: endoflife.date answered 404 "
                f"for {v1_url} and {v0_url}"
            )
        _raise_for_status(response, v0_url)
        return _parse_v0(product, _json(response, v0_url))


def _get(
    session: requests.Session, url: str, timeout: float, max_retry_wait: float
) -> requests.Response:
    for attempt in (1, 2):
        try:
            response = session.get(url, timeout=timeout, allow_redirects=True)
        except requests.Timeout as exc:
            # Checked before ConnectionError: ConnectTimeout is both.
            raise EolFetchError(f"no answer from {url} within {timeout:g} s (timeout)") from exc
        except requests.ConnectionError as exc:
            raise EolFetchError(f"cannot reach {url}: {_connection_reason(exc)}") from exc
        except requests.RequestException as exc:
            raise EolFetchError(f"request to {url} failed: {exc}") from exc
        if response.status_code != 429:
            return response
        header = response.headers.get("Retry-After")
        wait = _retry_after_seconds(header)
        if header is None:
            raise EolFetchError(f"rate-limited by endoflife.date (HTTP 429 from {url})")
        if attempt == 2:
            raise EolFetchError(
                f"still rate-limited by endoflife.date after one retry (HTTP 429 from {url}, "
                f"Retry-After: {header})"
            )
        if wait is None or wait > max_retry_wait:
            raise EolFetchError(
                f"rate-limited by endoflife.date (HTTP 429 from {url}, Retry-After: {header}; "
                f"this import waits at most {max_retry_wait:g} s): try again later"
            )
        logger.info("HTTP 429 from %s; retrying once in %g s (Retry-After)", url, wait)
        time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _retry_after_seconds(header: str | None) -> float | None:
    """Retry-After is either delay-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if header is None:
        return None
    value = header.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _connection_reason(exc: BaseException) -> str:
    """'connection refused' etc. from the chain requests/urllib3 wrap the OSError in."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            if current.errno == errno.ECONNREFUSED:
                return "connection refused"
            return current.strerror or str(current)
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(current.args)
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    if "name or service not known" in text.lower() or "resolve" in text.lower():
        return "host name not found"
    return text


def _raise_for_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if status >= 500:
        raise EolFetchError(f"endoflife.date server error: HTTP {status} from {url}")
    if status >= 400:
        raise EolFetchError(f"endoflife.date refused the request: HTTP {status} from {url}")
    if status != 200:
        # 3xx are followed; anything else (204, an unfollowed 304) carries no product.
        raise EolFetchError(f"unexpected HTTP {status} from {url}")


def _json(response: requests.Response, url: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        content_type = response.headers.get("Content-Type", "no Content-Type")
        raise EolFetchError(f"invalid JSON from {url} ({content_type}): {exc}") from exc


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _cycle_name(value: object, product: str) -> str:
    # Some v0 data has numeric cycles (e.g. 12); they are names, not numbers.
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise EolFetchError(f"a release of {product} has no usable name: {value!r}")


def _parse_v1(product: str, data: Any) -> dict[str, CycleDates]:
    if not isinstance(data, dict):
        raise EolFetchError(
            f"unexpected v1 answer for {product}: expected an object with `result`, "
            f"got {_type_name(data)}"
        )
    result = data.get("result")
    if not isinstance(result, dict):
        raise EolFetchError(
            f"unexpected v1 answer for {product}: "
            + ("no `result`" if result is None else f"`result` is {_type_name(result)}")
        )
    releases = result.get("releases")
    if not isinstance(releases, list):
        raise EolFetchError(f"unexpected v1 answer for {product}: `result.releases` is not a list")
    if not releases:
        raise EolFetchError(f"endoflife.date lists no releases for {product}")
    cycles: dict[str, CycleDates] = {}
    for release in releases:
        if not isinstance(release, dict):
            raise EolFetchError(
                f"unexpected v1 answer for {product}: a release is {_type_name(release)}"
            )
        cycle = _cycle_name(release.get("name"), product)
        problems: list[str] = []
        values: dict[str, Any] = {"cycle": cycle, "api": "v1"}
        for field_name, (date_key, flag_key) in _V1_KEYS.items():
            values[field_name] = _read_date(release.get(date_key), date_key, cycle, problems)
            if flag_key is not None:
                flag = release.get(flag_key)
                if flag is not None and not isinstance(flag, bool):
                    problems.append(f"{flag_key} of {cycle} is not a boolean: {flag!r}")
                    flag = None
                values[_FLAG_OF[field_name]] = flag
        cycles[cycle] = CycleDates(**values, problems=tuple(problems))
    return cycles


def _parse_v0(product: str, data: Any) -> dict[str, CycleDates]:
    if not isinstance(data, list):
        raise EolFetchError(
            f"unexpected v0 answer for {product}: expected a list of cycles, got {_type_name(data)}"
        )
    if not data:
        raise EolFetchError(f"endoflife.date lists no releases for {product}")
    cycles: dict[str, CycleDates] = {}
    for release in data:
        if not isinstance(release, dict):
            raise EolFetchError(
                f"unexpected v0 answer for {product}: a cycle is {_type_name(release)}"
            )
        cycle = _cycle_name(release.get("cycle"), product)
        problems: list[str] = []
        values: dict[str, Any] = {"cycle": cycle, "api": "v0"}
        for field_name, (key, inverted) in _V0_KEYS.items():
            raw = release.get(key)
            if isinstance(raw, bool) and inverted is not None:
                # v0 `support`/`extendedSupport` true means *still supported*, while `eol`
                # true means EOL reached; normalise both to "end reached".
                values[_FLAG_OF[field_name]] = (not raw) if inverted else raw
                values[field_name] = None
                continue
            values[field_name] = _read_date(raw, key, cycle, problems)
        cycles[cycle] = CycleDates(**values, problems=tuple(problems))
    return cycles


def _read_date(raw: Any, key: str, cycle: str, problems: list[str]) -> dt.date | None:
    """A date, or None when absent; anything else is recorded as a problem of the cycle."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        problems.append(
            f"{key} of {cycle} is a boolean ({str(raw).lower()}) where a date is expected"
        )
        return None
    if isinstance(raw, str) and _ISO_DATE.match(raw):
        try:
            value = dt.date.fromisoformat(raw)
        except ValueError:
            pass
        else:
            if dates.in_range(value):
                return value
            # 9999-12-31 for "never" would overflow once a grace period is added.
            problems.append(
                f"{key} of {cycle} is {raw}, outside the accepted range "
                f"{dates.EARLIEST:%Y-%m-%d} to {dates.LATEST:%Y-%m-%d}"
            )
            return None
    problems.append(f"{key} of {cycle} is not a date: {raw!r}")
    return None


# --- Applying -------------------------------------------------------------------------------


def import_all(
    actor: Any = None,
    *,
    base_url: str | None = None,
    timeout: float | None = None,
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
) -> list[ProductResult]:
    """Import the upstream dates of every OS image that follows an endoflife.date product.

    Rows are grouped by product so each product is fetched once. Rolling releases and rows
    without a product are skipped. One product's failure is recorded on its rows and does
    not stop the others. `actor` is the user who asked, or None for the daily schedule.
    """
    base_url = base_url or settings.EOL_API_BASE_URL
    timeout = timeout if timeout is not None else settings.EOL_API_TIMEOUT
    rows = (
        UpstreamLifecycle.objects.filter(image__kind=ImageKind.OS, rolling=False)
        .exclude(eol_product="")
        .select_related("image")
        .order_by("eol_product", "image__label")
    )
    by_product: dict[str, list[UpstreamLifecycle]] = defaultdict(list)
    for row in rows:
        by_product[row.eol_product.strip()].append(row)

    results = []
    for product, product_rows in sorted(by_product.items()):
        try:
            result = _import_product(
                product, product_rows, actor, base_url, timeout, max_retry_wait
            )
        except EolFetchError as exc:
            result = _record_failure(product, product_rows, str(exc))
        except Exception as exc:
            # A bug or a database error on one product must not cost the others their import.
            logger.exception("EOL import of %s failed unexpectedly", product)
            result = _record_failure(product, product_rows, f"unexpected error: {exc}")
        results.append(result)
    return results


def _record_failure(product: str, rows: list[UpstreamLifecycle], message: str) -> ProductResult:
    """Flag the rows without touching their dates or their last successful check."""
    logger.error("EOL import of %s failed: %s", product, message)
    UpstreamLifecycle.objects.filter(pk__in=[row.pk for row in rows]).update(
        last_import_ok=False, last_import_message=message
    )
    changes = [
        ImageChange(image=row.image.label, cycle=row.eol_cycle, ok=False, message=message)
        for row in rows
    ]
    return ProductResult(product=product, ok=False, message=message, changes=changes)


def _import_product(
    product: str,
    rows: list[UpstreamLifecycle],
    actor: Any,
    base_url: str,
    timeout: float,
    max_retry_wait: float,
) -> ProductResult:
    cycles = fetch_product(base_url, product, timeout, max_retry_wait=max_retry_wait)
    now = timezone.now()
    applied = (apply_cycle(row.pk, product, cycles, now=now, actor=actor) for row in rows)
    changes = [change for change in applied if change is not None]

    errors = [change.message for change in changes if not change.ok and not change.warnings]
    warnings = [warning for change in changes for warning in change.warnings]
    changed = sum(1 for change in changes if change.changes)
    api = next(iter(cycles.values())).api
    summary = f"{len(changes)} image(s) checked, {changed} changed"
    if api == "v0":
        summary += " (from the deprecated v0 API)"
    for warning in warnings:
        logger.warning("EOL import of %s: %s", product, warning)
    if errors:
        message = "; ".join(errors) + f"; {summary}"
        logger.error("EOL import of %s: %s", product, message)
        return ProductResult(product, False, message, changes, warnings)
    logger.info("EOL import of %s: %s", product, summary)
    return ProductResult(product, True, summary, changes, warnings)


def apply_cycle(
    row_pk: int,
    product: str,
    cycles: dict[str, CycleDates],
    *,
    now: dt.datetime,
    actor: Any = None,
) -> ImageChange | None:
    """Apply the fetched dates to one lifecycle row and audit what changed.

    The row is read again under a lock, so a manager's date set since the import started
    is respected. Returns what was done (the row's last_import_* fields say the same), or
    None when the row was deleted, made rolling or moved to another product meanwhile.
    """
    with transaction.atomic():
        row = (
            UpstreamLifecycle.objects.select_for_update()
            .select_related("image")
            .filter(pk=row_pk)
            .first()
        )
        if row is None or row.rolling or row.eol_product.strip() != product:
            return None
        label = row.image.label
        cycle_name = row.eol_cycle.strip()
        dates = cycles.get(cycle_name) if cycle_name else None
        if dates is None or dates.problems:
            if not cycle_name:
                message = f"no release cycle set for {product}"
            elif dates is None:
                message = f"cycle {cycle_name} not found in {product}"
            else:
                message = "; ".join(dates.problems) + "; nothing applied"
            row.last_import_ok = False
            row.last_import_message = message
            row.save(update_fields=["last_import_ok", "last_import_message"])
            return ImageChange(image=label, cycle=cycle_name, ok=False, message=message)

        change = ImageChange(image=label, cycle=cycle_name, ok=True, message="")
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        proposed_before = row.proposed_security_support_end
        for field_name in UpstreamLifecycle.DATE_FIELDS:
            _apply_field(row, field_name, dates, change, before, after)
        proposal_fields = []
        if row.proposed_security_support_end != proposed_before:
            row.proposed_at = now if row.proposed_security_support_end else None
            proposal_fields = ["proposed_security_support_end", "proposed_at"]

        row.last_checked_at = now
        row.last_import_ok = not change.warnings
        parts = [
            f"{_LABEL[name]} {_show(old)} -> {_show(new)}"
            for name, (old, new) in change.changes.items()
        ]
        parts += change.warnings + change.notes
        change.message = "; ".join(parts) if parts else "up to date"
        change.ok = row.last_import_ok
        row.last_import_message = change.message
        row.save(
            update_fields=[
                *after.keys(),
                *proposal_fields,
                "last_checked_at",
                "last_import_ok",
                "last_import_message",
            ]
        )
        if after:
            audit.record(
                AUDIT_ACTION,
                actor=actor,
                image=row.image,
                target=row,
                before=before,
                after=after,
                message=f"endoflife.date {product} {cycle_name}: {change.message}",
            )
    return change


def _apply_field(
    row: UpstreamLifecycle,
    field_name: str,
    dates: CycleDates,
    change: ImageChange,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """Apply one date field, filling `before`/`after` with what changed (date and source)."""
    stored = getattr(row, field_name)
    new = dates.date_of(field_name)
    source_field = f"{field_name}_source"
    label = _LABEL[field_name]

    if new is None:
        # A boolean or a missing value never replaces a stored date: report it instead.
        if field_name == "security_support_end" and dates.is_eol:
            change.notes.append(
                f"endoflife.date says EOL is reached but gives no date; kept {_show(stored)}"
            )
        return
    if row.is_manager_override(field_name):
        if new != stored:
            change.notes.append(
                f"{label}: kept manager's date {_show(stored)} (endoflife.date says {_show(new)})"
            )
        return
    if field_name == "security_support_end":
        if stored is not None and new < stored:
            if new == row.rejected_security_support_end:
                change.notes.append(
                    f"upstream still says EOL {_show(new)}; a manager rejected it, "
                    f"kept {_show(stored)}"
                )
                return
            row.proposed_security_support_end = new
            change.warnings.append(
                f"upstream moved EOL of {row.image.label} backwards from {_show(stored)} "
                f"to {_show(new)}; not applied (a manager must confirm it)"
            )
            return
        row.proposed_security_support_end = None
    if new != stored or row.source_of(field_name) != DateSource.ENDOFLIFE_DATE:
        before[field_name] = stored
        before[source_field] = row.source_of(field_name)
        setattr(row, field_name, new)
        setattr(row, source_field, DateSource.ENDOFLIFE_DATE)
        after[field_name] = new
        after[source_field] = DateSource.ENDOFLIFE_DATE.value
        if new != stored:
            change.changes[field_name] = (stored, new)


def _show(value: dt.date | None) -> str:
    return value.isoformat() if value else "none"


# --- an earlier EOL waiting for a manager -------------------------------------------------------


class NoProposal(Exception):
    """The row has no proposed EOL (decided meanwhile, or withdrawn by a later import)."""


def accept_proposal(row_pk: int, *, actor: Any) -> UpstreamLifecycle:
    """Apply the earlier EOL upstream proposed, as an endoflife.date date, and audit it."""
    with transaction.atomic():
        row = UpstreamLifecycle.objects.select_for_update().select_related("image").get(pk=row_pk)
        proposed = row.proposed_security_support_end
        if proposed is None:
            raise NoProposal(row.image.label)
        before = {
            "security_support_end": row.security_support_end,
            "security_support_end_source": row.security_support_end_source,
            "proposed_security_support_end": proposed,
        }
        row.security_support_end = proposed
        row.security_support_end_source = DateSource.ENDOFLIFE_DATE
        row.proposed_security_support_end = None
        row.proposed_at = None
        row.save(
            update_fields=[
                "security_support_end",
                "security_support_end_source",
                "proposed_security_support_end",
                "proposed_at",
            ]
        )
        audit.record(
            "eol.proposal_accepted",
            actor=actor,
            image=row.image,
            target=row,
            before=before,
            after={
                "security_support_end": proposed,
                "security_support_end_source": DateSource.ENDOFLIFE_DATE.value,
            },
            message=f"EOL moved backwards to {_show(proposed)} as upstream says",
        )
    return row


def reject_proposal(row_pk: int, *, actor: Any) -> UpstreamLifecycle:
    """Keep the stored EOL; the rejected date is not proposed again by later imports."""
    with transaction.atomic():
        row = UpstreamLifecycle.objects.select_for_update().select_related("image").get(pk=row_pk)
        proposed = row.proposed_security_support_end
        if proposed is None:
            raise NoProposal(row.image.label)
        row.rejected_security_support_end = proposed
        row.proposed_security_support_end = None
        row.proposed_at = None
        row.save(
            update_fields=[
                "rejected_security_support_end",
                "proposed_security_support_end",
                "proposed_at",
            ]
        )
        audit.record(
            "eol.proposal_rejected",
            actor=actor,
            image=row.image,
            target=row,
            before={"proposed_security_support_end": proposed},
            after={"rejected_security_support_end": proposed},
            message=f"Kept EOL {_show(row.security_support_end)}; upstream said {_show(proposed)}",
        )
    return row
