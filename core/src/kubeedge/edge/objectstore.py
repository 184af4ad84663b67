"""The Devices and DeviceModels the cloud sent this edge, with their versions, in SQLite.

An edge that starts while its cloud is unreachable serves what it last knew from here (edge
autonomy, as KubeEdge's MetaManager ``meta`` table gives), and tells the cloud these versions
when it connects (``hub/sync``), so only what changed comes down again.

Not thread-safe: every method runs in the edge hub's single database thread.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from kubeedge.wal import open_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    body BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StoredObject:
    resource: str
    """``device/{ns}/{name}`` or ``devicemodel/{ns}/{name}``."""
    version: str
    body: bytes
    """The object as JSON, as the cloud sent it."""


class ObjectStore:
    """Objects by resource; :meth:`apply` writes a batch of puts and deletes in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        self._db = open_wal(self.path, _SCHEMA, check_same_thread=False)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"object store {self.path} is not open")
        return self._db

    def load(self) -> list[StoredObject]:
        rows = self.db.execute("SELECT resource, version, body FROM objects ORDER BY resource").fetchall()
        return [StoredObject(r, v, bytes(b)) for r, v, b in rows]

    def apply(self, puts: list[StoredObject], deletes: list[str], synced: bool = False) -> None:
        """Store ``puts`` and remove ``deletes`` at once; ``synced`` records that the set is complete
        (a ``hub/synced`` came): until then a start from the store does not drop twins."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO objects (resource, version, body) VALUES (?, ?, ?) "
                "ON CONFLICT (resource) DO UPDATE SET version = excluded.version, body = excluded.body",
                [(o.resource, o.version, o.body) for o in puts],
            )
            db.executemany("DELETE FROM objects WHERE resource = ?", [(r,) for r in deletes])
            if synced:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('synced', '1')")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def ever_synced(self) -> bool:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'synced'").fetchone()
        return row is not None
