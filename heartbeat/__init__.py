"""Heartbeats and monitors (DESIGN §6, docs/heartbeats.md, docs/monitors.md).

- ``emitter``: a synthetic heartbeat sent every second through the public intake API with a
  reserved key, like a customer would; intake turns it into a marker on every partition of
  every topic (stores/runtime/watermarks.py turns markers into per-partition watermarks);
- ``gate``: "complete through T" for an (org, metric) = the lowest watermark among the
  partition owners a query over it needs; plus pipeline lag per store and partition;
- ``evaluator``/``notify``: monitors judged only over complete windows, webhooks.
"""
