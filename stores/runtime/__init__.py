"""The consumer runtime every store process shares.

consume a batch -> decode (unreadable -> dead-letter topic) -> apply -> make durable ->
commit offsets; plus rebalance handling, the registry heartbeat and the HTTP read server.
"""

from stores.runtime.service import run_store
from stores.runtime.settings import StoreSettings
from stores.runtime.store import Record, StartPosition, Store

__all__ = ["Record", "StartPosition", "Store", "StoreSettings", "run_store"]
