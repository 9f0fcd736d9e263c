"""Durable state in the state directory: resources as JSON rows in a SQLite file, and the
disk images of imported snapshots as files beside it. Survives a restart."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Store:
    """Resources by kind and id; one lock, so handlers on several threads see one state."""

    def __init__(self, state_dir: Path) -> None:
        # Absolute from the start: every path derived from it is handed to qemu-img and QEMU,
        # and a relative backing file is resolved from the overlay's folder, not from here.
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.state_dir / "blobs"
        self.blob_dir.mkdir(exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(
            self.state_dir / "localcloud.sqlite3", check_same_thread=False, isolation_level=None
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS resources (kind TEXT, id TEXT, data TEXT, "
            "PRIMARY KEY (kind, id))"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def put(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO resources (kind, id, data) VALUES (?, ?, ?)",
                (kind, obj["id"], json.dumps(obj)),
            )
        return obj

    def get(self, kind: str, id_: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute(
                "SELECT data FROM resources WHERE kind = ? AND id = ?", (kind, id_)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def all(
        self, kind: str, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT data FROM resources WHERE kind = ? ORDER BY rowid", (kind,)
            ).fetchall()
        items = [json.loads(r[0]) for r in rows]
        return [i for i in items if where(i)] if where else items

    def delete(self, kind: str, id_: str) -> bool:
        with self.lock:
            cursor = self.db.execute("DELETE FROM resources WHERE kind = ? AND id = ?", (kind, id_))
        return cursor.rowcount == 1

    def kinds(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.db.execute("SELECT DISTINCT kind FROM resources")]

    def meta(self, key: str, default: Any = None) -> Any:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))
            )

    def blob_path(self, name: str) -> Path:
        return self.blob_dir / name

    def reset(self) -> None:
        """Forget everything (the operator's reset)."""
        with self.lock:
            self.db.execute("DELETE FROM resources")
            self.db.execute("DELETE FROM meta")
        for blob in self.blob_dir.iterdir():
            blob.unlink(missing_ok=True)
