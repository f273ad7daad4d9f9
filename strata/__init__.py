"""Strata's shared kernel: data model, wire codec, partitioning, settings, keys, registry.

The kernel never imports a service package (intake, stores, query, heartbeat); the CLI
starts services as subprocesses by module name.
"""

__version__ = "0.1.0"
