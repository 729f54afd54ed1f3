"""The in-process stores: the embedded durable store (the default engine, see
``embedded.py``) and the memory store (``memory.py``), on one state machine
(``state.py``)."""

from durable_mcp.store.embedded import (
    STOPPED,
    UNWRITABLE_HINT,
    EmbeddedStore,
    StoreStopped,
    StoreUnavailable,
    peek,
)
from durable_mcp.store.journal import StoreError

__all__ = [
    "STOPPED",
    "UNWRITABLE_HINT",
    "EmbeddedStore",
    "StoreError",
    "StoreStopped",
    "StoreUnavailable",
    "peek",
]
