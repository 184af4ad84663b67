"""Device twins in SQLite (WAL): what the twin module must not lose across a restart.

The module keeps the authoritative state in memory and hands this store batches of changed rows;
each batch is one transaction. Every method runs in the twin module's single database thread.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubeedge.wal import open_wal

SCHEMA_VERSION = 2
"""2: ``devices.state_reason``. An older database is migrated when opened (:data:`_MIGRATIONS`)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    state TEXT,
    last_online TEXT,
    attributes TEXT,
    state_reason TEXT
);
CREATE TABLE IF NOT EXISTS twins (
    device_id TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    optional INTEGER NOT NULL,
    expected TEXT, expected_ts INTEGER, expected_cloud INTEGER NOT NULL, expected_edge INTEGER NOT NULL,
    actual TEXT, actual_ts INTEGER, actual_cloud INTEGER NOT NULL, actual_edge INTEGER NOT NULL,
    metadata TEXT,
    error TEXT,
    spec_desired TEXT,
    PRIMARY KEY (device_id, name)
) WITHOUT ROWID;
"""


_MIGRATIONS = {
    # from version N to N + 1; a column added last, where CREATE TABLE has it, so rows keep one shape
    1: ("ALTER TABLE devices ADD COLUMN state_reason TEXT",),
}


@dataclass(slots=True)
class TwinRecord:
    """One property's twin: expected (desired) and actual (reported) value with versions."""

    name: str
    type: str = "string"
    optional: bool = True
    expected: str | None = None
    expected_ts: int | None = None
    expected_cloud: int = 0
    expected_edge: int = 0
    actual: str | None = None
    actual_ts: int | None = None
    actual_cloud: int = 0
    actual_edge: int = 0
    metadata: dict[str, Any] | None = None
    """Metadata other than the type, as given by the last update."""
    error: str | None = None
    """The mapper's last error for this property (cleared by the next good value)."""
    spec_desired: str | None = None
    """The desired value last taken from the Device spec (so a spec change can be told apart)."""
    # from the DeviceModel, not stored
    read_only: bool = False
    minimum: str | None = None
    maximum: str | None = None

    @property
    def deleted(self) -> bool:
        return self.type == "deleted"

    def row(self, device_id: str) -> tuple[Any, ...]:
        return (
            device_id,
            self.name,
            self.type,
            int(self.optional),
            self.expected,
            self.expected_ts,
            self.expected_cloud,
            self.expected_edge,
            self.actual,
            self.actual_ts,
            self.actual_cloud,
            self.actual_edge,
            json.dumps(self.metadata) if self.metadata else None,
            self.error,
            self.spec_desired,
        )


@dataclass(slots=True)
class DeviceRecord:
    id: str
    namespace: str
    name: str
    description: str | None = None
    state: str | None = None
    last_online: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    twins: dict[str, TwinRecord] = field(default_factory=dict)
    state_reason: str | None = None
    """Why the device is in its state, as its mapper said (``state/update``'s ``reason``)."""

    def row(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.namespace,
            self.name,
            self.description,
            self.state,
            self.last_online,
            json.dumps(self.attributes) if self.attributes else None,
            self.state_reason,
        )


@dataclass
class Batch:
    """One transaction's worth of changes."""

    devices: list[tuple[Any, ...]] = field(default_factory=list)
    twins: list[tuple[Any, ...]] = field(default_factory=list)
    deleted_devices: list[str] = field(default_factory=list)
    deleted_twins: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.devices or self.twins or self.deleted_devices or self.deleted_twins)


class TwinStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None

    def open(self) -> None:
        # WAL, synchronous=NORMAL (kubeedge.wal): a power loss may lose the last few commits,
        # which the mappers report again on their next cycle.
        db = open_wal(self.path, "")
        # Checkpoints (copying the WAL into the database file, with an fsync that can take
        # hundreds of ms) are run by :meth:`checkpoint` from another thread, not inside a commit.
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("PRAGMA journal_size_limit=67108864")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path}: twin database schema {row[0]} is newer than this kubeedge's "
                f"({SCHEMA_VERSION}); use the kubeedge that wrote it, or a new data folder"
            )
        elif int(row[0]) < SCHEMA_VERSION:
            self._migrate(db, int(row[0]))
        self._db = db

    def _migrate(self, db: sqlite3.Connection, version: int) -> None:
        """Bring an older database up to :data:`SCHEMA_VERSION`, in one transaction."""
        db.execute("BEGIN")
        try:
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(version),))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._db is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    def checkpoint(self) -> None:
        """Copy committed pages from the WAL into the database file. Runs in its own thread with
        its own connection (SQLite lets it proceed beside the writer); commits stay short."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close_checkpointer(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def load(self) -> dict[str, DeviceRecord]:
        assert self._db is not None
        devices: dict[str, DeviceRecord] = {}
        for row in self._db.execute("SELECT * FROM devices"):
            devices[row[0]] = DeviceRecord(
                id=row[0],
                namespace=row[1],
                name=row[2],
                description=row[3],
                state=row[4],
                last_online=row[5],
                attributes=json.loads(row[6]) if row[6] else {},
                state_reason=row[7],
            )
        for row in self._db.execute("SELECT * FROM twins"):
            device = devices.get(row[0])
            if device is None:
                continue
            device.twins[row[1]] = TwinRecord(
                name=row[1],
                type=row[2],
                optional=bool(row[3]),
                expected=row[4],
                expected_ts=row[5],
                expected_cloud=row[6],
                expected_edge=row[7],
                actual=row[8],
                actual_ts=row[9],
                actual_cloud=row[10],
                actual_edge=row[11],
                metadata=json.loads(row[12]) if row[12] else None,
                error=row[13],
                spec_desired=row[14],
            )
        return devices

    def write(self, batch: Batch) -> None:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN")
        try:
            if batch.deleted_devices:
                ids = [(i,) for i in batch.deleted_devices]
                db.executemany("DELETE FROM twins WHERE device_id = ?", ids)
                db.executemany("DELETE FROM devices WHERE id = ?", ids)
            if batch.deleted_twins:
                db.executemany("DELETE FROM twins WHERE device_id = ? AND name = ?", batch.deleted_twins)
            if batch.devices:
                db.executemany(
                    "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch.devices
                )
            if batch.twins:
                db.executemany(
                    "INSERT OR REPLACE INTO twins VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    batch.twins,
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
                db.execute("ROLLBACK")
            raise
