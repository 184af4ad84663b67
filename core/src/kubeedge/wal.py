"""SQLite files in WAL mode, opened one way by every store (twins, the edge's cloud objects and
outbox, the cloud's status).

WAL with ``synchronous=NORMAL``: a committed transaction survives a crash of the process; only a
power loss may lose the last few commits. Autocommit (``isolation_level=None``): each store
starts its transactions itself.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_wal(path: Path, schema: str, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating the folder and file if need be) ``path`` in WAL mode and apply ``schema``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db
