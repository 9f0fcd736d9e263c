"""The feed's change stamp: what changed since the last request, in one query.

Database triggers on every table the feed reads (its own columns and its sections', see
lifecycle.feed) add a FeedChange row on each insert and delete, and on each update of a column
the feed shows. The database fires them whoever writes: `save()`, `QuerySet.update()`,
`bulk_create`, a raw statement or another program. The stamp is the sum of the rows' `changes`
with the newest row's random token:

- every committed change adds to the sum, so the stamp differs after it, even when two
  transactions commit out of order (a newest-id or latest-time stamp misses the one that
  commits last with the older value);
- writers only insert: no row is locked, so concurrent writers never wait on each other;
- the random token tells apart two databases (or one emptied and filled again) whose sums
  happen to be equal.

On SQLite the triggers fire for each row (an update that leaves the feed's columns as they were
adds nothing); on PostgreSQL for each statement, TRUNCATE included.

They are installed after every migrate (post_migrate), not by a migration: SQLite drops a
table's triggers when a migration rebuilds the table. Their names carry a digest of the tables
and columns they watch; `stamp()` checks that each one is there and answers None otherwise
(a migrate not run since the feed's columns changed, a trigger dropped by hand), and the feed
falls back to reading every column.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any

from django.db import connections, transaction
from django.db.models.sql.where import WhereNode

logger = logging.getLogger(__name__)

TABLE = "lifecycle_feedchange"
PREFIX = "feed_change_"
# Rows folded into one, their sum kept, once there are more than this.
FOLD_AFTER = 1000


def _filtered_on(queryset: Any) -> list[str] | None:
    """The columns of its own table a queryset's filter reads (a row can enter or leave the
    feed when one changes), or None when the filter is not a plain tree of column lookups."""
    table = queryset.model._meta.db_table
    columns: list[str] = []
    nodes = [queryset.query.where]
    while nodes:
        node = nodes.pop()
        if isinstance(node, WhereNode):
            nodes.extend(node.children)
            continue
        target = getattr(getattr(node, "lhs", None), "target", None)
        if target is None or getattr(node.lhs, "alias", None) != table:
            return None
        columns.append(target.column)
    return columns


def _watched(columns: list[tuple[Any, tuple[str, ...]]]) -> dict[str, list[str]]:
    """{table: its database columns the feed reads}, from the feed's fingerprint columns and
    their querysets' filters; an empty list when every column is watched."""
    tables: dict[str, list[str]] = {}
    every: set[str] = set()
    for queryset, names in columns:
        meta = queryset.model._meta
        watched = tables.setdefault(meta.db_table, [])
        filtered = _filtered_on(queryset)
        if filtered is None:
            every.add(meta.db_table)
            filtered = []
        for column in [meta.get_field(name).column for name in names] + filtered:
            if column not in watched:
                watched.append(column)
    return {table: [] if table in every else cols for table, cols in sorted(tables.items())}


def _names(tables: dict[str, list[str]], vendor: str) -> dict[str, list[str]]:
    """{table: its triggers' names}, each name holding a digest of everything watched."""
    digest = hashlib.sha256(repr(sorted(tables.items())).encode()).hexdigest()[:8]
    kinds = ("ins", "del", "upd") if vendor == "sqlite" else ("idt", "upd")
    return {table: [f"{PREFIX}{digest}_{table}_{kind}" for kind in kinds] for table in tables}


def _columns() -> list[tuple[Any, tuple[str, ...]]]:
    from lifecycle import feed

    return feed._FINGERPRINT_COLUMNS


def _existing(cursor: Any, vendor: str) -> list[tuple[str, str]]:
    """(name, table) of every feed trigger in the database."""
    if vendor == "sqlite":
        cursor.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger' AND name LIKE %s",
            [PREFIX + "%"],
        )
    else:
        cursor.execute(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND t.tgname LIKE %s",
            [PREFIX + "%"],
        )
    return [(name, table) for name, table in cursor.fetchall()]


def install(using: str = "default", **_: Any) -> None:
    """Create the feed's triggers (and drop any of an older set of columns), then count one
    change: a migration may have changed rows while a rebuilt table had none."""
    connection = connections[using]
    vendor = connection.vendor
    if vendor not in ("sqlite", "postgresql"):
        return
    tables = _watched(_columns())
    names = _names(tables, vendor)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        present = set(connection.introspection.table_names(cursor))
        if TABLE not in present:
            return
        wanted = {name for table_names in names.values() for name in table_names}
        for name, table in _existing(cursor, vendor):
            if name not in wanted:
                on = "" if vendor == "sqlite" else f" ON {connection.ops.quote_name(table)}"
                cursor.execute(f"DROP TRIGGER IF EXISTS {connection.ops.quote_name(name)}{on}")
        if vendor == "postgresql":
            cursor.execute(
                f"CREATE OR REPLACE FUNCTION {TABLE}_add() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN INSERT INTO {TABLE} (changes, token) "
                "VALUES (1, md5(random()::text || clock_timestamp()::text)); "
                "RETURN NULL; END $$"
            )
        for table, columns in tables.items():
            if table in present:
                for sql in _create(connection, vendor, table, columns, names[table]):
                    cursor.execute(sql)
        cursor.execute(
            f"INSERT INTO {TABLE} (changes, token) VALUES (1, %s)", [secrets.token_hex(16)]
        )


def _create(
    connection: Any, vendor: str, table: str, columns: list[str], names: list[str]
) -> list[str]:
    q = connection.ops.quote_name
    of = f"OF {', '.join(q(c) for c in columns)} " if columns else ""
    if vendor == "sqlite":
        add = (
            f"BEGIN INSERT INTO {TABLE} (changes, token) "
            "VALUES (1, lower(hex(randomblob(16)))); END"
        )
        changed = " OR ".join(f"OLD.{q(c)} IS NOT NEW.{q(c)}" for c in columns) or "1"
        insert, delete, update = names
        return [
            f"CREATE TRIGGER IF NOT EXISTS {q(insert)} AFTER INSERT ON {q(table)} {add}",
            f"CREATE TRIGGER IF NOT EXISTS {q(delete)} AFTER DELETE ON {q(table)} {add}",
            f"CREATE TRIGGER IF NOT EXISTS {q(update)} AFTER UPDATE {of}ON {q(table)} "
            f"WHEN {changed} {add}",
        ]
    run = f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_add()"
    writes, update = names
    return [
        f"DROP TRIGGER IF EXISTS {q(writes)} ON {q(table)}",
        f"CREATE TRIGGER {q(writes)} AFTER INSERT OR DELETE OR TRUNCATE ON {q(table)} {run}",
        f"DROP TRIGGER IF EXISTS {q(update)} ON {q(table)}",
        f"CREATE TRIGGER {q(update)} AFTER UPDATE {of}ON {q(table)} {run}",
    ]


def stamp(using: str = "default") -> str | None:
    """The change stamp (one query), or None when a trigger the stamp needs is missing."""
    connection = connections[using]
    vendor = connection.vendor
    if vendor not in ("sqlite", "postgresql"):
        return None
    names = _names(_watched(_columns()), vendor)
    wanted = sorted(name for table_names in names.values() for name in table_names)
    marks = ", ".join(["%s"] * len(wanted))
    if vendor == "sqlite":
        installed = (
            f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})"
        )
    else:
        installed = (
            f"SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgname IN ({marks})"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT ({installed}), coalesce(sum(changes), 0), count(*), max(id), "
            f"(SELECT token FROM {TABLE} ORDER BY id DESC LIMIT 1) FROM {TABLE}",
            wanted,
        )
        found, total, rows, newest, token = cursor.fetchone()
    if found != len(wanted):
        logger.warning(
            "The feed's change triggers are missing (%d of %d): run migrate. The feed reads "
            "every column for its ETag until then.",
            len(wanted) - found,
            len(wanted),
        )
        return None
    if rows > FOLD_AFTER:
        fold(newest, using)
    return f"{total}-{token}"


def fold(up_to: int, using: str = "default") -> None:
    """Fold the rows up to id `up_to` into one, keeping their sum.

    Only the rows this statement deletes are counted into the new one, so two folds at once,
    or a writer's row still uncommitted below `up_to`, lose no change. The new row's token
    changes the stamp once: a spurious change, never a missed one.
    """
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE id <= %s RETURNING changes", [up_to])
        folded = sum(row[0] for row in cursor.fetchall())
        if folded:
            cursor.execute(
                f"INSERT INTO {TABLE} (changes, token) VALUES (%s, %s)",
                [folded, secrets.token_hex(16)],
            )
