"""The embedded durable store (the default engine): see ``embedded.py``."""

from durable_mcp.store.embedded import STOPPED, EmbeddedStore, StoreStopped, peek
from durable_mcp.store.journal import StoreError

__all__ = ["STOPPED", "EmbeddedStore", "StoreError", "StoreStopped", "peek"]
