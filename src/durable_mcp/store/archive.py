"""Finished jobs, off the heap: the embedded store keeps them in SQLite, not in memory.

A job that has ended (its promise settled, no execution of it under way)
needs no place in the protocol's state machine any more: nothing will change
it but a retry or the retention sweep. So the store moves it, with its steps
and tasks, into the ``archive`` table of its own database, in the commit of
a journal entry that removes it from memory (``Archive``: replayed, it
removes it again). Memory then grows with the running jobs, not with the
retention: a week of a busy server's finished jobs costs disk, not RAM.

Reads find an archived job on demand: ``promise.get`` of its id, a page of
``list_jobs`` (merged newest first with the jobs in memory, from the table's
indexes), a job's steps for the jobs page. Each row has its checksum, checked
on every read, as each journal entry has. A request that would change an
archived job (there is none in normal use) first brings it back into memory
(``Unarchive``, which carries the job itself, so that replay needs no read).
"""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from durable_mcp.owners import owner_key
from durable_mcp.sdk_compat import DurablePromise, Task
from durable_mcp.store.journal import MOVE_ASIDE, StoreError, Write

#: The table, made on open in a store that has none (every store before it).
SCHEMA = """
CREATE TABLE IF NOT EXISTS archive (
  id TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  kind TEXT,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  settled_at INTEGER NOT NULL,
  root BLOB NOT NULL,
  rest BLOB NOT NULL,
  crc INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_newest ON archive (owner, created_at, id);
CREATE INDEX IF NOT EXISTS archive_status_newest ON archive (owner, status, created_at, id);
CREATE INDEX IF NOT EXISTS archive_settled ON archive (settled_at);
"""


class Rest(msgspec.Struct):
    """What an archived job keeps besides its own promise: its steps' promises and its tasks."""

    promises: list[DurablePromise]
    tasks: list[Task]


@dataclass
class ArchivedJob:
    """A job as the archive keeps it: its promise, its steps' promises and its tasks."""

    root: DurablePromise
    steps: list[DurablePromise]
    tasks: list[Task]

    def encode(self) -> tuple[bytes, bytes]:
        return _encoder.encode(self.root), _encoder.encode(Rest(self.steps, self.tasks))

    @classmethod
    def decode(cls, root: bytes, rest: bytes) -> ArchivedJob:
        saved = _rest_decoder.decode(rest)
        return cls(_root_decoder.decode(root), saved.promises, saved.tasks)


_encoder = msgspec.msgpack.Encoder()
_root_decoder = msgspec.msgpack.Decoder(DurablePromise)
_rest_decoder = msgspec.msgpack.Decoder(Rest)


def crc_of(root: bytes, rest: bytes) -> int:
    return zlib.crc32(rest, zlib.crc32(root))


@dataclass
class ArchiveWrite(Write):
    """Jobs to keep in the archive, and ids to remove from it, in the commit of the
    entries before them (``seq``: the last)."""

    jobs: list[tuple[ArchivedJob, str, str | None]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    def save(self, db: sqlite3.Connection) -> None:
        for job, status, kind in self.jobs:
            root, rest = job.encode()
            db.execute(
                "INSERT OR REPLACE INTO archive VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.root.id,
                    owner_key(job.root.id),
                    kind,
                    status,
                    job.root.created_at,
                    job.root.settled_at or 0,
                    root,
                    rest,
                    crc_of(root, rest),
                ),
            )
        db.executemany("DELETE FROM archive WHERE id = ?", [(job_id,) for job_id in self.gone])


class Archive:
    """Reads the archive of the store in ``path``, on a connection of its own (the
    event loop's; the journal writes on its writer thread). It sees what is
    committed, which is all the store answers anyway."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        self._db.text_factory = bytes  # a row damaged into text fails its checksum

    def close(self) -> None:
        self._db.close()

    def root(self, job_id: str) -> DurablePromise | None:
        """The archived job's own promise, or None (its steps are not decoded)."""
        row = self._row(job_id)
        return None if row is None else self._root(job_id, *row)

    def job(self, job_id: str) -> ArchivedJob | None:
        """The archived job with its steps and tasks, or None."""
        row = self._row(job_id)
        return None if row is None else self._checked(job_id, *row)

    def _row(self, job_id: str) -> tuple[Any, Any, Any] | None:
        try:
            row = self._db.execute(
                "SELECT root, rest, crc FROM archive WHERE id = ?", (job_id,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._damaged(job_id, str(exc)) from exc
        return None if row is None else (row[0], row[1], row[2])

    def position(self, job_id: str) -> tuple[int, str] | None:
        """Where the archived job is in the newest-first order, for a cursor."""
        row = self._db.execute("SELECT created_at FROM archive WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else (row[0], job_id)

    def newest_first(
        self,
        status: str | None,
        kind: str | None,
        before: tuple[int, str] | None,
        name_contains: str | None,
        owner: str | None,
    ) -> Iterator[DurablePromise]:
        """The archived jobs of ``status``, ``kind`` and ``owner`` (None: any), newest
        first from ``before``, whose names contain ``name_contains``; read as iterated."""
        where: list[str] = ["1"]
        params: list[object] = []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if before is not None:
            where.append("(created_at, id) < (?, ?)")
            params += [before[0], before[1]]
        if name_contains:  # in the name, not in the owner's part of the id
            where.append("instr(substr(id, length(owner) + 1 + 2 * (owner <> '')), ?) > 0")
            params.append(name_contains)
        rows = self._db.execute(
            f"SELECT id, root, rest, crc FROM archive WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC",
            params,
        )
        with contextlib.closing(rows):
            for job_id, root, rest, crc in rows:  # a damaged row stops the page, saying so
                yield self._root(job_id.decode(), root, rest, crc)

    def every_promise(self) -> Iterator[DurablePromise]:
        """Every archived job's promises, its own and its steps' (a full read)."""
        rows = self._db.execute("SELECT id, root, rest, crc FROM archive")
        with contextlib.closing(rows):
            for job_id, root, rest, crc in rows:
                job = self._checked(job_id.decode(), root, rest, crc)
                yield job.root
                yield from job.steps

    def settled_before(self, cutoff: int, most: int) -> list[str]:
        """Up to ``most`` archived jobs that settled before ``cutoff`` (the retention's)."""
        rows = self._db.execute(
            "SELECT id FROM archive WHERE settled_at < ? LIMIT ?", (cutoff, most)
        ).fetchall()
        return [row[0].decode() for row in rows]

    def count(self, status: str | None = None, kind: str | None = None) -> int:
        """How many jobs are archived (of ``status`` and ``kind``, when given)."""
        row = self._db.execute(
            "SELECT count(*) FROM archive WHERE coalesce(status = ?, 1) AND coalesce(kind = ?, 1)",
            (status, kind),
        ).fetchone()
        return int(row[0])

    def _checked(self, job_id: str, root: Any, rest: Any, crc: Any) -> ArchivedJob:
        return self._decoded(job_id, root, rest, crc, ArchivedJob.decode)

    def _root(self, job_id: str, root: Any, rest: Any, crc: Any) -> DurablePromise:
        """The job's own promise, the whole row checked: a status or a page needs no more."""
        return self._decoded(job_id, root, rest, crc, lambda root, _: _root_decoder.decode(root))

    def _decoded[T](
        self, job_id: str, root: Any, rest: Any, crc: Any, decode: Callable[[bytes, bytes], T]
    ) -> T:
        """``decode(root, rest)`` of a row whose checksum holds; else it is damage."""
        if not isinstance(root, bytes) or not isinstance(rest, bytes) or crc_of(root, rest) != crc:
            raise self._damaged(job_id, "fails its checksum")
        try:
            return decode(root, rest)
        except msgspec.DecodeError as exc:
            raise self._damaged(job_id, f"cannot be read: {exc}") from exc

    def _damaged(self, job_id: str, why: str) -> StoreError:
        return StoreError(
            f"the store in {self.path.parent} is damaged (archived job {job_id!r} {why}); "
            f"{MOVE_ASIDE}"
        )
