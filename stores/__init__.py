"""Store consumers: one sub-package per store plus the shared consumer runtime.

Each store is its own consumer group and process (``python -m stores.ram`` …); see
docs/stores.md for the runtime's commit sequence and the on-disk key layouts.
"""
