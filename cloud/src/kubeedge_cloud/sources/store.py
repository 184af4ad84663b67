"""The files source's SQLite database (``DATA_DIR/cloud.db``): object versions and device status.

* ``objects``: every object the folder serves, its version and what is sent for it. Versions
  come from one counter (kept in ``meta``), bumped when an object's content changes, so a
  version is never reused, even by an object deleted and made again, and survives restarts: a
  restarted cloud gives unchanged objects their old versions and reconnecting edges get nothing.
* ``device_status``: per device, the reporting node, state, lastOnlineTime and the twins
  (reported and observed-desired values with their times and types), one row per device: a
  batch of reports is one transaction that writes each device once. A device's row goes with the
  device: deleted in the transaction after the one that took the device from ``objects``.

The database is only touched from one thread (:class:`Store` runs every statement in its own
single-thread executor), never on the event loop. WAL with ``synchronous=NORMAL``, as the edge's
stores: an edge's report is acked after the commit that holds it, and a commit survives a crash
of the cloud process (``kill -9``); a power cut may lose the last commits, not corrupt the file.
(``FULL`` adds an fsync per commit: on a busy disk a second or more, which the acks wait for.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from kubeedge.api.channel import TwinStatus
from kubeedge.api.twin import now_ms
from kubeedge.wal import open_wal
from kubeedge_cloud.sources.source import DeviceStatusRecord, StatusChange, merge_change

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT PRIMARY KEY, version INTEGER NOT NULL, digest TEXT NOT NULL, content BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS device_status (
    key TEXT PRIMARY KEY, node TEXT NOT NULL, state TEXT, last_online_time TEXT,
    updated_at INTEGER NOT NULL, twins BLOB NOT NULL
);
"""

ROWS_FROM_JSON = """
INSERT OR REPLACE INTO device_status (key, node, state, last_online_time, updated_at, twins)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]')
FROM json_each(?)
"""


@dataclass(frozen=True)
class StoredObject:
    resource: str
    version: int
    digest: str
    content: bytes


class Store:
    """One cloud database; every method but the constructor's helpers runs in the store's thread."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cloud-store")
        self._db: sqlite3.Connection | None = None
        self.objects: dict[str, StoredObject] = {}
        self.counter = 0
        self.status: dict[str, StatusChange] = {}
        """Device key -> its status as stored: node, state, last_online_time, updated_at, twins."""
        self.commits = 0

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    async def open(self) -> None:
        await self.run(self._open)

    async def close(self) -> None:
        await self.run(self._close)
        self._executor.shutdown(wait=True)

    def _open(self) -> None:
        if self.read_only:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self._db = open_wal(self.path, SCHEMA, check_same_thread=False)
        db = self._db
        row = db.execute("SELECT value FROM meta WHERE key='counter'").fetchone()
        self.counter = int(row[0]) if row else 0
        self.objects = {
            r[0]: StoredObject(r[0], r[1], r[2], bytes(r[3]))
            for r in db.execute("SELECT resource, version, digest, content FROM objects")
        }
        for key, node, state, last_online, updated_at, twins in db.execute(
            "SELECT key, node, state, last_online_time, updated_at, twins FROM device_status"
        ):
            self.status[key] = {
                "node": node,
                "state": state,
                "last_online_time": last_online,
                "updated_at": updated_at,
                "twins": orjson.loads(twins),
            }

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # ------------------------------------------------------------------ objects

    def put_objects(
        self, current: Mapping[str, tuple[str, bytes]]
    ) -> tuple[list[StoredObject], list[StoredObject]]:
        """Make the objects table hold exactly ``current`` (resource -> (digest, content)).

        Returns (objects put with a new version, objects deleted), in one transaction.
        """
        assert self._db is not None
        put: list[StoredObject] = []
        deleted = [self.objects[r] for r in self.objects if r not in current]
        counter = self.counter
        for resource, (digest, content) in current.items():
            held = self.objects.get(resource)
            if held is not None and held.digest == digest:
                continue
            counter += 1
            put.append(StoredObject(resource, counter, digest, content))
        counter += len(deleted)  # each deletion is a revision of its own
        if not put and not deleted:
            return put, deleted
        db = self._db
        with _transaction(db):
            db.executemany(
                "INSERT OR REPLACE INTO objects (resource, version, digest, content) VALUES (?, ?, ?, ?)",
                [(o.resource, o.version, o.digest, o.content) for o in put],
            )
            db.executemany("DELETE FROM objects WHERE resource = ?", [(o.resource,) for o in deleted])
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('counter', ?)", (str(counter),))
        for o in put:
            self.objects[o.resource] = o
        for o in deleted:
            del self.objects[o.resource]
        self.counter = counter
        return put, deleted

    # ------------------------------------------------------------------ status

    def merge_status(self, batch: Mapping[str, tuple[str, StatusChange]]) -> list[tuple[Any, ...]]:
        """Merge reports into the status held (called on the event loop); the rows to write."""
        stamp = now_ms()
        rows = []
        for key, (node, change) in batch.items():
            record = self.status.get(key)
            if record is None:
                record = self.status[key] = {"state": None, "last_online_time": None, "twins": {}}
            merge_change(record, change)
            record["node"] = node
            record["updated_at"] = stamp
            rows.append((key, node, record["state"], record["last_online_time"], stamp, record["twins"]))
        return rows

    def write_status_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Write the rows in one statement: the whole batch is one JSON array SQLite unpacks.

        Not ``executemany``: the sqlite3 module releases the GIL around every row's step, and
        while the event loop's thread is busy each row then waits up to a GIL switch interval
        (5 ms) to get it back: a thousand rows took seconds. One statement is one hand-over.
        """
        assert self._db is not None
        db = self._db
        with _transaction(db):
            db.execute(ROWS_FROM_JSON, (orjson.dumps(list(rows)),))
        self.commits += 1

    def drop_status(self, keep: Callable[[str], bool]) -> list[str]:
        """Forget the status of every device ``keep`` says no (called on the event loop); the keys
        dropped, for :meth:`delete_status_rows`."""
        gone = [key for key in self.status if not keep(key)]
        for key in gone:
            del self.status[key]
        return gone

    def delete_status_rows(self, keys: list[str]) -> None:
        assert self._db is not None
        db = self._db
        with _transaction(db):
            db.execute(
                "DELETE FROM device_status WHERE key IN (SELECT value FROM json_each(?))",
                (orjson.dumps(keys),),
            )
        self.commits += 1


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def status_record(held: StatusChange) -> DeviceStatusRecord:
    """The view of a stored status that :meth:`Source.read_status` answers."""
    return DeviceStatusRecord(
        node=held.get("node", ""),
        state=held.get("state"),
        last_online_time=held.get("last_online_time"),
        updated_at=held.get("updated_at", 0),
        twins={k: TwinStatus.model_validate(v) for k, v in held.get("twins", {}).items()},
    )
