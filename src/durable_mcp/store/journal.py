"""The embedded store's files: a SQLite journal of state changes, with snapshots.

The store's state is the SDK's ``ServerState``, a deterministic state machine;
this module only makes it durable. Every change is one journal entry (the
request applied, or a tick of the clock, with the time it happened), numbered
in order. ``append`` queues an entry; ``take`` hands everything queued to
``write``, which saves it in one transaction (the store calls it on a thread of
its own, so that the event loop never waits on the disk), and ``written`` or
``unwritten`` then tells the journal how that went. A write that fails writes
nothing and says so, so what is on disk is always a whole prefix of what
happened. ``commit`` does all three at once, where waiting is fine. On open, the last snapshot is
loaded and the entries after it are applied again, which rebuilds the exact
state. A snapshot replaces the entries it covers, so the journal stays short.

Beside the journal, two tables of rows saved with the commits
(:meth:`Journal.save_rows`): ``notes``, what running jobs said of themselves
(their progress), each job's latest only, advice outside the state, not
checked on open; and ``outbox``, the events the webhook has yet to deliver,
each written in the commit of the change it tells of and deleted once
delivered.

Why SQLite: atomic commits and crash recovery that are tested far beyond what a
file format of our own would be, in the standard library. The journal runs in
WAL mode with ``synchronous=FULL``: a commit is fsynced, so a committed entry
survives ``kill -9`` and power loss alike.

SQLite itself cannot tell a lost write-ahead log from an empty one: a deleted,
cut or garbled ``journal.sqlite3-wal`` silently rolls the store back to its
last checkpoint. So the number of the last committed entry is also kept in a
small file of its own, ``committed``, and a store that holds fewer entries
than that, or whose entries skip a number, is refused on open.

One process owns a data dir at a time, enforced with an OS file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

#: Bumped when the files change shape; an older program refuses a newer store.
FORMAT_VERSION = 1
DB_NAME = "journal.sqlite3"
COMMITTED_NAME = "committed"
LOCK_NAME = "lock"

#: What to do with a store that cannot be read as it is.
MOVE_ASIDE = (
    "it was left untouched. Restore the whole directory from a backup, "
    "or move it aside to start with an empty store."
)


class StoreError(Exception):
    """The store cannot be opened; the message says why and names the data dir."""


class JournalWriteError(Exception):
    """A commit failed (a full disk, say) and wrote nothing; the message says why."""


class _Damaged(Exception):
    """What the files hold contradicts itself (read by ``_read``, worded by the caller)."""


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
        self._committed_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        self._pending: list[Write] = []  # queued for the next commit
        self._seq = 0  # the last entry appended
        self._committed_seq = 0  # the last entry on disk
        self._snapshot_seq = 0  # the last entry the newest snapshot covers
        self._committed_snapshot_seq = 0  # likewise, of the newest snapshot on disk

    # ── opening and closing ────────────────────────────────────────────────

    def open(self) -> Saved:
        """Lock the data dir, check the files, and return what was saved."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._committed_fd = os.open(
                self.data_dir / COMMITTED_NAME, os.O_RDWR | os.O_CREAT, 0o644
            )
        except OSError as exc:
            self.close()
            raise StoreError(_cannot_use(self.data_dir, exc)) from exc
        try:
            saved = self._load()
        except BaseException:
            self.close()
            raise
        self._seq = self._committed_seq = saved.last_seq
        self._snapshot_seq = saved.last_seq - len(saved.entries)
        self._committed_snapshot_seq = self._snapshot_seq
        self._note_committed(self._committed_seq)  # it may lag after a power cut
        return saved

    def close(self) -> None:
        """Close the files and release the lock; anything not committed is dropped."""
        self._pending.clear()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._committed_fd is not None:
            os.close(self._committed_fd)
            self._committed_fd = None
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
            if holder == str(os.getpid()):
                raise StoreError(
                    f"data dir {self.data_dir} is in use by another app in this process: "
                    "give each app a data dir of its own (DURABLE_MCP_DATA_DIR, or "
                    "Settings(data_dir=...))"
                ) from None
            raise StoreError(
                f"data dir {self.data_dir} is in use by another durable-mcp process "
                f"(pid {holder}); stop it or choose another DURABLE_MCP_DATA_DIR"
            ) from None
        try:
            lock_file.truncate(0)
            lock_file.write(f"{os.getpid()}\n")
            lock_file.flush()
        except OSError:
            lock_file.close()
            raise
        self._lock_file = lock_file

    def _load(self) -> Saved:
        # Read before the database: the server writes it after each commit, so
        # what it says was committed is never ahead of what the database holds.
        committed = _read_committed(self.data_dir)
        try:
            if not self.path.exists() and committed > 0:
                raise StoreError(
                    f"the store in {self.data_dir} has lost committed jobs: {DB_NAME} is "
                    f"missing but {COMMITTED_NAME} says jobs were committed; restore the "
                    f"whole directory from a backup, or move it aside to start with an "
                    f"empty store."
                )
            if self.path.exists():
                # Checked read-only first: a writer would reset a garbled WAL,
                # and a refused store must be left exactly as it was found.
                with contextlib.closing(_connect_read_only(self.path)) as db:
                    _check_complete(self.data_dir, _last_seq(db), committed)
            # Written on the store's writer thread, read on the loop's: one at a time.
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db = db
            # Until the checks pass, closing must not fold the WAL into the main file.
            db.setconfig(sqlite3.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            saved = self._read_or_create(db)
            for table in SIDE_TABLES:  # a store written before them has none
                db.execute(side_table(table))
        except sqlite3.Error as exc:
            raise StoreError(_cannot_open(self.data_dir, exc)) from exc
        except _Damaged as exc:
            raise StoreError(
                f"the store in {self.data_dir} is damaged ({exc}); {MOVE_ASIDE}"
            ) from exc
        db.setconfig(sqlite3.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, False)
        return saved

    @classmethod
    def peek(cls, data_dir: Path) -> Saved:
        """What is saved in ``data_dir``, read without taking it (its server may run)."""
        path = (data_dir / DB_NAME).resolve()  # as_uri() needs an absolute path
        if not path.is_file():
            raise StoreError(f"there is no embedded store in {data_dir}")
        try:
            # Read before the database: the server writes it after each commit,
            # so what it says was committed is never ahead of what is read.
            committed = _read_committed(data_dir)
            with contextlib.closing(_connect_read_only(path)) as db:
                db.execute("BEGIN")  # one consistent view while the server may write
                saved = cls(data_dir)._read(db)
        except sqlite3.Error as exc:
            raise StoreError(f"the store in {data_dir} cannot be read ({exc})") from exc
        except _Damaged as exc:
            raise StoreError(f"the store in {data_dir} is damaged ({exc}); {MOVE_ASIDE}") from exc
        _check_complete(data_dir, saved.last_seq, committed)
        return saved

    def read(self) -> Saved:
        """What is on disk now (after a failed commit: what the state must go back to)."""
        assert self._db is not None, "the journal is not open"
        return self._read(self._db)

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
                {side_table("notes")};
                {side_table("outbox")};
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
            raise _Damaged("no format version")
        if int(version[0]) > FORMAT_VERSION:
            raise StoreError(
                f"the store in {self.data_dir} has format {version[0]}, newer than this "
                f"durable-mcp understands ({FORMAT_VERSION}); upgrade durable-mcp. "
                "The store was left untouched."
            )
        row = db.execute("SELECT last_seq, data FROM snapshot WHERE id = 1").fetchone()
        snapshot, last_seq = (row[1], row[0]) if row else (None, 0)
        entries = []
        for seq, entry, crc in db.execute(
            "SELECT seq, entry, crc FROM journal WHERE seq > ? ORDER BY seq", (last_seq,)
        ):
            if seq != last_seq + 1:
                raise _Damaged(f"journal entries {last_seq + 1} to {seq - 1} are missing")
            if zlib.crc32(entry) != crc:
                raise _Damaged(f"journal entry {seq} fails its checksum")
            entries.append(bytes(entry))
            last_seq = seq
        return Saved(
            snapshot=bytes(snapshot) if snapshot else None, entries=entries, last_seq=last_seq
        )

    # ── writing ────────────────────────────────────────────────────────────

    def append(self, entry: bytes) -> None:
        """Queue an entry for the next :meth:`commit`."""
        self._seq += 1
        self._pending.append(Write(seq=self._seq, entry=entry))

    def queue(self, write: Write) -> None:
        """Queue ``write`` (a table of rows of its own: ``archive.py``) for the next
        commit, with the entries appended so far."""
        write.seq = self._seq
        self._pending.append(write)

    def ensure(self, schema: str) -> None:
        """Create what ``schema`` creates, if it is not there (``IF NOT EXISTS``)."""
        assert self._db is not None, "the journal is not open"
        try:
            self._db.executescript(f"BEGIN; {schema} COMMIT;")
        except sqlite3.Error as exc:
            raise StoreError(_cannot_open(self.data_dir, exc)) from exc

    def save_rows(self, table: SideTable, rows: dict[str, bytes | None]) -> None:
        """Queue rows of ``table`` (by key; None: delete it) for the next commit."""
        self._pending.append(RowsWrite(seq=self._seq, entry=b"", table=table, rows=rows))

    def read_rows(self, table: SideTable) -> dict[str, bytes]:
        """The rows of ``table``, by key."""
        assert self._db is not None, "the journal is not open"
        key = SIDE_TABLES[table]
        return {k: bytes(data) for k, data in self._db.execute(f"SELECT {key}, data FROM {table}")}

    def snapshot(self, data: bytes) -> None:
        """Queue a snapshot of the state after every entry appended so far."""
        self._snapshot_seq = self._seq
        self._pending.append(Write(seq=self._seq, entry=data, is_snapshot=True))

    @property
    def entries_since_snapshot(self) -> int:
        return self._seq - self._snapshot_seq

    def take(self) -> list[Write]:
        """Everything queued, for :meth:`write`; the queue starts again empty."""
        pending, self._pending = self._pending, []
        return pending

    def write(self, pending: list[Write]) -> None:
        """Save ``pending`` (from :meth:`take`) in one fsynced transaction.

        Safe on another thread than the one that appends, as long as one write
        runs at a time and :meth:`written` or :meth:`unwritten` follows it
        before the next. Raises :class:`JournalWriteError` if it cannot (a full
        disk, say); then nothing of ``pending`` was written.
        """
        if not pending:
            return
        assert self._db is not None, "the journal is not open"
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for write in pending:
                write.save(self._db)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # SQLite rolls back by itself then
                    self._db.execute("ROLLBACK")
            raise JournalWriteError(f"cannot write to {self.data_dir}: {exc}") from exc
        self._note_committed(pending[-1].seq)

    def written(self, pending: list[Write]) -> None:
        """``pending`` is on disk."""
        if pending:
            self._committed_seq = pending[-1].seq
        for write in pending:
            if write.is_snapshot:
                self._committed_snapshot_seq = write.seq

    def unwritten(self) -> None:
        """The last write failed: drop what is queued since, and number the next
        entry after the last one on disk, so the journal has no gap."""
        self._pending.clear()
        self._seq = self._committed_seq
        self._snapshot_seq = self._committed_snapshot_seq

    def commit(self) -> None:
        """Write everything queued in one fsynced transaction, on this thread.

        Raises :class:`JournalWriteError` if it cannot (a full disk, say):
        then nothing queued was written, the queue is emptied and the entry
        numbers go back to the last committed one, so the journal has no gap.
        """
        pending = self.take()
        try:
            self.write(pending)
        except JournalWriteError:
            self.unwritten()
            raise
        self.written(pending)

    def _note_committed(self, seq: int) -> None:
        """Record the last committed entry's number in ``committed`` (not fsynced:
        after a power cut it may lag, which only weakens the check on open)."""
        if self._committed_fd is not None:
            with contextlib.suppress(OSError):
                os.pwrite(self._committed_fd, f"{seq:>20}\n".encode(), 0)


type SideTable = Literal["notes", "outbox"]

#: The tables beside the journal, and their key column (a store from before one has
#: none: it is made on open).
SIDE_TABLES: dict[SideTable, str] = {"notes": "job", "outbox": "key"}


def side_table(table: SideTable) -> str:
    key = SIDE_TABLES[table]
    return f"CREATE TABLE IF NOT EXISTS {table} ({key} TEXT PRIMARY KEY, data BLOB NOT NULL)"


@dataclass
class Write:
    """One queued journal entry, or a snapshot."""

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
class RowsWrite(Write):
    """Rows of a side table, saved in the commit of the entries before them (``seq``:
    the last)."""

    table: SideTable = "notes"
    rows: dict[str, bytes | None] = field(default_factory=dict)

    def save(self, db: sqlite3.Connection) -> None:
        key = SIDE_TABLES[self.table]
        for name, data in self.rows.items():
            if data is None:
                db.execute(f"DELETE FROM {self.table} WHERE {key} = ?", (name,))
            else:
                db.execute(
                    f"INSERT OR REPLACE INTO {self.table} ({key}, data) VALUES (?, ?)", (name, data)
                )


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _read_committed(data_dir: Path) -> int:
    """The last entry number the server recorded as committed; 0 if none was."""
    try:
        # A power cut may leave the file empty or zeroed: that is a lag, not damage.
        text = (data_dir / COMMITTED_NAME).read_text().strip("\0 \n")
    except FileNotFoundError:
        return 0
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(_cannot_use(data_dir, exc)) from exc
    if not text:
        return 0
    if not text.isdigit():
        raise StoreError(
            f"the store in {data_dir} is damaged ({COMMITTED_NAME} holds {text[:40]!r}, "
            f"not an entry number); {MOVE_ASIDE}"
        )
    return int(text)


def _last_seq(db: sqlite3.Connection) -> int:
    """The number of the last entry the database holds (0 for a new store)."""
    tables = Journal._tables(db)
    if not {"snapshot", "journal"} <= tables:
        return 0
    (last,) = db.execute(
        "SELECT max(coalesce((SELECT max(seq) FROM journal), 0),"
        " coalesce((SELECT last_seq FROM snapshot WHERE id = 1), 0))"
    ).fetchone()
    return int(last)


def _check_complete(data_dir: Path, last_seq: int, committed: int) -> None:
    if last_seq < committed:
        raise StoreError(
            f"the store in {data_dir} has lost committed jobs: its journal ends at entry "
            f"{last_seq} but {committed} were committed ({DB_NAME}-wal was deleted, "
            f"cut or damaged, or {DB_NAME} was replaced by an older copy); {MOVE_ASIDE} "
            f"To accept the loss and keep what is left, delete {data_dir / COMMITTED_NAME}."
        )


def _cannot_use(data_dir: Path, exc: OSError | UnicodeDecodeError) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
    return f"cannot use data dir {data_dir}: {reason}{where}; it must be a writable directory"


def _cannot_open(data_dir: Path, exc: sqlite3.Error) -> str:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return f"the store in {data_dir} is damaged ({exc}); {MOVE_ASIDE}"
    return f"cannot open the store in {data_dir}: {exc}; it must be a writable directory"
