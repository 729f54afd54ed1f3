"""The embedded store's files: a SQLite journal of state changes, with snapshots.

The store's state is the SDK's ``ServerState``, a deterministic state machine;
this module only makes it durable. Every change is one journal entry (the
request applied, or a tick of the clock, with the time it happened), committed
in order; ``append`` returns a future that resolves once its entry is on disk.
On open, the last snapshot is loaded and the entries
after it are applied again, which rebuilds the exact state. A snapshot replaces
the entries it covers, so the journal stays short.

Why SQLite: atomic commits and crash recovery that are tested far beyond what a
file format of our own would be, in the standard library. The journal runs in
WAL mode with ``synchronous=FULL``: a commit is fsynced, so a committed
entry survives ``kill -9`` and power loss alike. Every entry appended during
one turn of the event loop is committed in one transaction right after it (a
writer thread was tried: handing each commit to it and back cost more than
the fsync).

One process owns a data dir at a time, enforced with an OS file lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

#: Bumped when the files change shape; an older program refuses a newer store.
FORMAT_VERSION = 1
DB_NAME = "journal.sqlite3"
LOCK_NAME = "lock"


class StoreError(Exception):
    """The store cannot be opened; the message says why and names the data dir."""


@dataclass(frozen=True)
class Saved:
    """What is on disk: the snapshot (if any) and the entries after it, in order."""

    snapshot: bytes | None
    entries: list[bytes]
    last_seq: int


class Journal:
    """Append entries and write snapshots to ``data_dir``; read them back on open."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self._lock_file: IO[str] | None = None
        self._db: sqlite3.Connection | None = None
        self._batch: _Batch | None = None  # the commit queued for this loop turn
        self._seq = 0  # the last entry appended
        self._snapshot_seq = 0  # the last entry the newest snapshot covers

    # ── opening and closing ────────────────────────────────────────────────

    def open(self) -> Saved:
        """Lock the data dir, check the format, and return what was saved."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data dir {self.data_dir}: {exc.strerror}") from exc
        self._lock()
        try:
            saved = self._load()
        except BaseException:
            self.close()
            raise
        self._seq = saved.last_seq
        self._snapshot_seq = saved.last_seq - len(saved.entries)
        return saved

    def close(self) -> None:
        """Commit what is queued, close the database and release the lock."""
        self._commit()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the lock
            self._lock_file = None

    def _lock(self) -> None:
        lock_path = self.data_dir / LOCK_NAME
        lock_file = open(lock_path, "a+")  # noqa: SIM115 -- held open while we own the dir
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise StoreError(
                f"data dir {self.data_dir} is in use by another durable-mcp process "
                f"(pid {holder}); stop it or choose another DURABLE_MCP_DATA_DIR"
            ) from None
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._lock_file = lock_file

    def _load(self) -> Saved:
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._db = db
            return self._read_or_create(db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"the store in {self.data_dir} is damaged ({exc}); it was left untouched. "
                "Move it aside to start with an empty store."
            ) from exc

    @classmethod
    def peek(cls, data_dir: Path) -> Saved:
        """What is saved in ``data_dir``, read without taking it (its server may run)."""
        path = (data_dir / DB_NAME).resolve()  # as_uri() needs an absolute path
        if not path.is_file():
            raise StoreError(f"there is no embedded store in {data_dir}")
        try:
            with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
                return cls(data_dir)._read(db)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"the store in {data_dir} cannot be read ({exc})") from exc

    def _read_or_create(self, db: sqlite3.Connection) -> Saved:
        if not self._tables(db):
            db.executescript(
                f"""
                BEGIN;
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 1),
                                       last_seq INTEGER NOT NULL, data BLOB NOT NULL);
                CREATE TABLE journal (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL,
                                      crc INTEGER NOT NULL);
                INSERT INTO meta VALUES ('format_version', '{FORMAT_VERSION}');
                COMMIT;
                """
            )
            return Saved(snapshot=None, entries=[], last_seq=0)
        return self._read(db)

    @staticmethod
    def _tables(db: sqlite3.Connection) -> set[str]:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _read(self, db: sqlite3.Connection) -> Saved:
        if not self._tables(db):
            return Saved(snapshot=None, entries=[], last_seq=0)
        version = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        if version is None or not version[0].isdigit():
            raise sqlite3.DatabaseError("no format version")
        if int(version[0]) > FORMAT_VERSION:
            raise StoreError(
                f"the store in {self.data_dir} has format {version[0]}, newer than this "
                f"durable-mcp understands ({FORMAT_VERSION}); upgrade durable-mcp. "
                "The store was left untouched."
            )
        row = db.execute("SELECT last_seq, data FROM snapshot WHERE id = 1").fetchone()
        snapshot, last_seq = (row[1], row[0]) if row else (None, 0)
        entries = []
        rows = db.execute(
            "SELECT seq, entry, crc FROM journal WHERE seq > ? ORDER BY seq", (last_seq,)
        ).fetchall()
        for index, (seq, entry, crc) in enumerate(rows):
            if zlib.crc32(entry) != crc:
                if index == len(rows) - 1:
                    logger.warning("skipping the torn last journal entry (seq %d)", seq)
                    break
                raise sqlite3.DatabaseError(f"journal entry {seq} fails its checksum")
            entries.append(bytes(entry))
            last_seq = seq
        return Saved(
            snapshot=bytes(snapshot) if snapshot else None, entries=entries, last_seq=last_seq
        )

    # ── writing ────────────────────────────────────────────────────────────

    def append(self, entry: bytes) -> asyncio.Future[None]:
        """Queue an entry; the future resolves once it is committed to disk."""
        self._seq += 1
        return self._queue(_Write(seq=self._seq, entry=entry))

    def snapshot(self, data: bytes) -> asyncio.Future[None]:
        """Queue a snapshot of the state after every entry appended so far."""
        self._snapshot_seq = self._seq
        return self._queue(_Write(seq=self._seq, entry=data, is_snapshot=True))

    @property
    def entries_since_snapshot(self) -> int:
        return self._seq - self._snapshot_seq

    def _queue(self, write: _Write) -> asyncio.Future[None]:
        # Everything queued during one turn of the event loop is one commit.
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = _Batch(done=loop.create_future())
            loop.call_soon(self._commit)
        self._batch.writes.append(write)
        return self._batch.done

    def _commit(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None or self._db is None:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for write in batch.writes:
                write.save(self._db)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            logger.error("cannot write the journal in %s: %s", self.data_dir, exc)
            batch.done.set_exception(exc)
            batch.done.exception()  # reported above; the waiters get it too
        else:
            batch.done.set_result(None)


@dataclass
class _Write:
    seq: int
    entry: bytes
    is_snapshot: bool = False

    def save(self, db: sqlite3.Connection) -> None:
        if self.is_snapshot:
            db.execute(
                "INSERT OR REPLACE INTO snapshot (id, last_seq, data) VALUES (1, ?, ?)",
                (self.seq, self.entry),
            )
            db.execute("DELETE FROM journal WHERE seq <= ?", (self.seq,))
        else:
            db.execute(
                "INSERT INTO journal (seq, entry, crc) VALUES (?, ?, ?)",
                (self.seq, self.entry, zlib.crc32(self.entry)),
            )


@dataclass
class _Batch:
    done: asyncio.Future[None]
    writes: list[_Write] = field(default_factory=list)
