"""The embedded durable store (the default engine): see ``embedded.py``."""

from durable_mcp.store.embedded import EmbeddedStore
from durable_mcp.store.journal import StoreError

__all__ = ["EmbeddedStore", "StoreError"]
