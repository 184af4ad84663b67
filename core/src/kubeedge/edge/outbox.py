"""The edge's store-and-forward outbox: reports for the cloud kept in SQLite until the cloud acks.

KubeEdge's edge drops what it would send the cloud while the link is down (its twin module checks
``disconnected`` and discards; docs/design.md, "Edge hub"). Here every report goes through this
queue first, and leaves it only when the cloud says it stored it.

One entry is one property's status (``name`` = the property) or one device's state (``name`` =
``""``), as the JSON body the ``twin/report`` message carries. The policy:

* **newest wins per property**: putting an entry replaces the unsent entry of the same device and
  name; an entry already sent and not yet acked stays (it may be acked) and the new one follows;
* **order per property**: entries are sent oldest first, and an ack also removes every older entry
  of the same device and name, so a value the cloud has seen is never followed by an older one;
* **bounded in bytes** (``cloud.queue.maxBytes``): when a put would pass the bound, the oldest
  entries are dropped first (their device and property are the ones that changed least recently)
  and counted in :attr:`Outbox.stats` (``dropped_entries``, ``dropped_bytes``; kept across
  restarts), which ``kubeedge edge status`` shows;
* **two lanes**: an entry is *urgent* when it answers a user's desired value or carries a change
  of the device's state (:func:`kubeedge.api.channel.answers_desired`); :meth:`Outbox.take` takes
  either lane, so the edge hub can keep a priority report in flight beside its ordinary one. An
  entry that replaces an unsent urgent one stays urgent (it carries the answer too). Both lanes
  go down one connection in the order they are sent, and a message's entries are unsent again
  only where no newer entry of the same device and name exists, so the per-property order holds
  across lanes as it does within one.

It also remembers what the cloud acked last per device and name (``acked``), so an edge that
starts again can tell which twins changed while it was not running (or in the moment between the
twin's commit and the outbox's, at a ``kill -9``) and queue exactly those.

Not thread-safe: every method runs in the edge hub's single database thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kubeedge.wal import open_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    name TEXT NOT NULL,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    due_ms INTEGER NOT NULL DEFAULT 0,
    sent_in TEXT,
    urgent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_key ON entries (device, name);
CREATE INDEX IF NOT EXISTS entries_sent ON entries (sent_in);
CREATE TABLE IF NOT EXISTS acked (
    device TEXT NOT NULL,
    name TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (device, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_ENTRY_OVERHEAD = 64
"""Bytes an entry costs beyond its body and names (row, index entries), for the bound."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing to report: a property's status (``name``) or the device's state (``name == ""``)."""

    device: str
    name: str
    body: bytes
    due_ms: int = 0
    """Not sent before this time (ms since the epoch): a property's ``reportCycle``."""
    urgent: bool = False
    """It answers a user's desired value or changes the device's state: the priority lane."""

    @property
    def size(self) -> int:
        return len(self.body) + len(self.device) + len(self.name) + _ENTRY_OVERHEAD


@dataclass(frozen=True, slots=True)
class Taken:
    """Entries taken for one message, and when the next entry that is not due yet will be."""

    entries: list[Entry]
    next_due_ms: int | None


Lane = Literal["all", "telemetry", "priority"]
"""What :meth:`Outbox.take` takes: every entry (a cloud without priority reports), only the
entries that are not urgent, or only the urgent ones."""

_LANE_URGENCY: dict[str, tuple[int, int]] = {"all": (0, 1), "telemetry": (0, 0), "priority": (1, 1)}
"""The values of ``urgent`` a lane takes."""


@dataclass(slots=True)
class OutboxStats:
    entries: int = 0
    bytes: int = 0
    max_bytes: int = 0
    dropped_entries: int = 0
    """Entries dropped to keep within ``max_bytes`` (oldest first), since the outbox was created."""
    dropped_bytes: int = 0
    refused_entries: int = 0
    """Entries the cloud refused (a device not assigned to this node, a report too large)."""
    acked_entries: int = 0
    """Entries the cloud acked since this process started."""


class Outbox:
    """A SQLite queue of report entries; see the module docstring for the policy."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._db: sqlite3.Connection | None = None
        self.stats = OutboxStats(max_bytes=max_bytes)

    # ----------------------------------------------------------------- lifecycle

    def open(self) -> None:
        db = self._db = open_wal(self.path, _SCHEMA, check_same_thread=False)
        columns = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
        if "urgent" not in columns:  # an outbox written before the priority lane
            db.execute("ALTER TABLE entries ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0")
        self.unsend()  # entries sent by the last process and never acked
        self._recount()
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        self.stats.dropped_entries = int(counters.get("dropped_entries", 0))
        self.stats.dropped_bytes = int(counters.get("dropped_bytes", 0))
        self.stats.refused_entries = int(counters.get("refused_entries", 0))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"outbox {self.path} is not open")
        return self._db

    def _tx(self) -> _Transaction:
        return _Transaction(self.db, self._recount)

    def _recount(self) -> None:
        """After a rolled-back transaction: the counts as the database has them."""
        count, size = self.db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries").fetchone()
        self.stats.entries, self.stats.bytes = int(count), int(size)

    # ----------------------------------------------------------------- queue

    def put(self, entries: list[Entry]) -> int:
        """Queue ``entries`` (newest wins per device and name) in one transaction; returns how
        many older entries were dropped to stay within the bound."""
        if not entries:
            return 0
        db = self.db
        with self._tx():
            for entry in entries:
                old = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(urgent), 0) FROM entries "
                    "WHERE device = ? AND name = ? AND sent_in IS NULL",
                    (entry.device, entry.name),
                ).fetchone()
                urgent = entry.urgent or bool(old[2])  # the replaced one's answer is in this one too
                if old[0]:
                    db.execute(
                        "DELETE FROM entries WHERE device = ? AND name = ? AND sent_in IS NULL",
                        (entry.device, entry.name),
                    )
                    self.stats.entries -= int(old[0])
                    self.stats.bytes -= int(old[1])
                db.execute(
                    "INSERT INTO entries (device, name, body, size, due_ms, urgent) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (entry.device, entry.name, entry.body, entry.size, 0 if urgent else entry.due_ms, urgent),
                )
                self.stats.entries += 1
                self.stats.bytes += entry.size
            return self._keep_bound()

    def _keep_bound(self) -> int:
        """Drop the oldest entries until the outbox is within ``max_bytes``."""
        db = self.db
        dropped = dropped_bytes = 0
        while self.stats.bytes > self.max_bytes:
            rows = db.execute("SELECT seq, size FROM entries ORDER BY seq LIMIT 256").fetchall()
            if not rows:
                break
            last = 0
            for seq, size in rows:
                if self.stats.bytes <= self.max_bytes:
                    break
                last = seq
                self.stats.bytes -= size
                self.stats.entries -= 1
                dropped += 1
                dropped_bytes += size
            db.execute("DELETE FROM entries WHERE seq <= ?", (last,))
        if dropped:
            self.stats.dropped_entries += dropped
            self.stats.dropped_bytes += dropped_bytes
            self._save_counter("dropped_entries", self.stats.dropped_entries)
            self._save_counter("dropped_bytes", self.stats.dropped_bytes)
        return dropped

    def take(self, message_id: str, max_bytes: int, now_ms: int, lane: Lane = "all") -> Taken:
        """Mark the oldest unsent entries of ``lane`` that are due, up to ``max_bytes`` of bodies,
        as sent in ``message_id`` and return them (at least one, if any is due, whatever its
        size). ``next_due_ms`` is over every unsent entry, of either lane."""
        db = self.db
        chosen: list[tuple[int, Entry]] = []
        total = 0
        cursor = db.execute(
            "SELECT seq, device, name, body, due_ms, urgent FROM entries "
            "WHERE sent_in IS NULL AND due_ms <= ? AND urgent IN (?, ?) ORDER BY seq",
            (now_ms, *_LANE_URGENCY[lane]),
        )
        for seq, device, name, body, due, urgent in cursor:
            entry = Entry(device, name, bytes(body), due, bool(urgent))
            if chosen and total + entry.size > max_bytes:
                break
            chosen.append((seq, entry))
            total += entry.size
        cursor.close()
        if chosen:
            with self._tx():
                db.executemany(
                    "UPDATE entries SET sent_in = ? WHERE seq = ?", [(message_id, seq) for seq, _ in chosen]
                )
        row = db.execute(
            "SELECT MIN(due_ms) FROM entries WHERE sent_in IS NULL AND due_ms > ?", (now_ms,)
        ).fetchone()
        return Taken([entry for _, entry in chosen], row[0])

    def acked(self, message_id: str) -> int:
        """The cloud stored ``message_id``: its entries, and older entries of the same device and
        name, leave the outbox; their bodies become the last acked ones. Returns the entries acked."""
        db = self.db
        rows = db.execute(
            "SELECT seq, device, name, body FROM entries WHERE sent_in = ?", (message_id,)
        ).fetchall()
        if not rows:
            return 0
        with self._tx():
            for seq, device, name, body in rows:
                removed = db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries "
                    "WHERE device = ? AND name = ? AND seq <= ?",
                    (device, name, seq),
                ).fetchone()
                db.execute(
                    "DELETE FROM entries WHERE device = ? AND name = ? AND seq <= ?", (device, name, seq)
                )
                self.stats.entries -= int(removed[0])
                self.stats.bytes -= int(removed[1])
                db.execute(
                    "INSERT INTO acked (device, name, body) VALUES (?, ?, ?) "
                    "ON CONFLICT (device, name) DO UPDATE SET body = excluded.body",
                    (device, name, body),
                )
        self.stats.acked_entries += len(rows)
        return len(rows)

    def refused(self, message_id: str) -> int:
        """The cloud refused ``message_id`` for good: its entries are dropped and counted."""
        db = self.db
        with self._tx():
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries WHERE sent_in = ?", (message_id,)
            ).fetchone()
            db.execute("DELETE FROM entries WHERE sent_in = ?", (message_id,))
            self.stats.entries -= int(count)
            self.stats.bytes -= int(size)
            self.stats.refused_entries += int(count)
            self._save_counter("refused_entries", self.stats.refused_entries)
        return int(count)

    def unsend(self, message_id: str | None = None) -> None:
        """Entries sent and not acked (the link went down, an ack did not come) are unsent again:
        those of ``message_id``, or of every message. Where a newer entry of the same device and
        name exists (waiting, or sent in another message), the older one is dropped: sent again
        it could reach the cloud after the newer one."""
        with self._tx():
            if message_id is None:
                self.db.execute("UPDATE entries SET sent_in = NULL WHERE sent_in IS NOT NULL")
            else:
                self.db.execute("UPDATE entries SET sent_in = NULL WHERE sent_in = ?", (message_id,))
            self._drop_superseded()

    def _drop_superseded(self) -> None:
        db = self.db
        stale = db.execute(
            "SELECT e.seq, e.size FROM entries e WHERE e.sent_in IS NULL AND EXISTS (SELECT 1 FROM "
            "entries n WHERE n.device = e.device AND n.name = e.name AND n.seq > e.seq)"
        ).fetchall()
        if stale:
            db.executemany("DELETE FROM entries WHERE seq = ?", [(seq,) for seq, _ in stale])
            self.stats.entries -= len(stale)
            self.stats.bytes -= sum(size for _, size in stale)

    def forget_device(self, device: str) -> None:
        """The device is no longer served here: its entries and acked bodies go."""
        db = self.db
        with self._tx():
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entries WHERE device = ?", (device,)
            ).fetchone()
            db.execute("DELETE FROM entries WHERE device = ?", (device,))
            db.execute("DELETE FROM acked WHERE device = ?", (device,))
            self.stats.entries -= int(count)
            self.stats.bytes -= int(size)

    def known_bodies(self) -> dict[tuple[str, str], bytes]:
        """The newest body per device and name: queued, else last acked (what the cloud has or
        will get). The edge hub compares the twins with it at start."""
        db = self.db
        known = {(d, n): bytes(b) for d, n, b in db.execute("SELECT device, name, body FROM acked")}
        for device, name, body in db.execute("SELECT device, name, body FROM entries ORDER BY seq"):
            known[(device, name)] = bytes(body)
        return known

    def pending(self) -> list[Entry]:
        """Every entry, oldest first (for tests and diagnostics)."""
        return [
            Entry(d, n, bytes(b), due, bool(urgent))
            for d, n, b, due, urgent in self.db.execute(
                "SELECT device, name, body, due_ms, urgent FROM entries ORDER BY seq"
            )
        ]

    def _save_counter(self, name: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception); nested use is flat."""

    def __init__(self, db: sqlite3.Connection, on_rollback: Callable[[], None]) -> None:
        self.db = db
        self.on_rollback = on_rollback
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if not self.outer:
            return
        if kind is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
            self.on_rollback()
