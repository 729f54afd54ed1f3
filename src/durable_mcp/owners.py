"""Whose a job is: every job belongs to whoever started it, and only they see it.

A caller signed in with a JWT (``DURABLE_MCP_JWKS_URI`` ...) is the owner its
subject names; every other caller (the single ``DURABLE_MCP_TOKEN``, or a
server without auth) is the one owner :data:`SINGLE`. A job's name is unique
per owner, so the store keeps a job under its owner's prefix and its name::

    tea           the single owner's "tea" (as every store before owners kept it)
    ~alice/tea    alice's "tea"
    ~bob%3A7/tea  the "tea" of the subject "bob:7" (the subject, percent-encoded)

The owner is part of the job's id, so every store and every replica keeps it
with the job and no lookup can cross it: ``tea`` asked for by bob is the id
``~bob/tea``, which alice's job never is. A name never begins with ``~``.
An owner with the admin scope (``DURABLE_MCP_ADMIN_SCOPE``) sees the store's
own ids, every owner's jobs.

Who the caller is comes from the request (``current``): its access token, as
FastMCP's auth made it, or an owner set with ``acting_as`` (the jobs page, which
signs in by cookie). This module imports no MCP at import time: the stores use
its ids, and `durable-mcp serve` opens them while FastMCP is still importing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote

#: The first character of an owned job's id; no job name begins with it.
OWNED = "~"

#: Ends the owner's part of an owned job's id (never in the percent-encoded subject).
SEP = "/"


@dataclass(frozen=True)
class Owner:
    """Who acts: a signed-in subject, or (``subject`` None) the single owner."""

    subject: str | None = None
    #: Sees and acts on every owner's jobs, by their ids in the store.
    admin: bool = False

    @property
    def key(self) -> str:
        """The owner's part of its jobs' ids (empty for the single owner)."""
        return "" if self.subject is None else key_of(self.subject)

    def job_id(self, name: str) -> str | None:
        """The id in the store of this owner's job ``name``; None if none of theirs
        can have it (a name beginning with ``~``: another owner's)."""
        if self.admin:
            return name
        if name.startswith(OWNED):
            return None
        return name if self.subject is None else f"{OWNED}{self.key}{SEP}{name}"

    def name_of(self, job_id: str) -> str:
        """The name this owner knows its job ``job_id`` by (the admin: the id)."""
        if self.admin or self.subject is None:
            return job_id
        return job_id.removeprefix(f"{OWNED}{self.key}{SEP}")

    @property
    def sees(self) -> str | None:
        """The key of the jobs this owner sees (None: every owner's)."""
        return None if self.admin else self.key


#: The owner of every job when there is no sign-in: the single token's, or nobody's.
SINGLE = Owner()


def key_of(subject: str) -> str:
    """A subject as it is kept in its jobs' ids: percent-encoded, with no ``/`` or ``:``."""
    return quote(subject, safe="@.-_+")


def owner_key(job_id: str) -> str:
    """The owner's part of a job's (or a step's) id; empty for the single owner."""
    if not job_id.startswith(OWNED) or SEP not in job_id:
        return ""
    return job_id[1 : job_id.index(SEP)]


def subject_of(job_id: str) -> str | None:
    """The subject whose job ``job_id`` is; None for the single owner's."""
    key = owner_key(job_id)
    return unquote(key) if key else None


_acting: contextvars.ContextVar[Owner | None] = contextvars.ContextVar(
    "durable_mcp_owner", default=None
)


@contextlib.contextmanager
def acting_as(owner: Owner) -> Iterator[None]:
    """Within, :func:`current` is ``owner`` (a caller not signed in by MCP's auth)."""
    token = _acting.set(owner)
    try:
        yield
    finally:
        _acting.reset(token)


def current() -> Owner:
    """Who the current request acts as: its access token's owner, else :data:`SINGLE`."""
    acting = _acting.get()
    if acting is not None:
        return acting
    # Imported here, not at the top: see the module's docstring.
    from fastmcp.server.dependencies import get_access_token

    owner = getattr(get_access_token(), "owner", None)
    return owner if isinstance(owner, Owner) else SINGLE
