"""Heartbeats and monitors (DESIGN §6) — not built yet; this package reserves the name.

What will live here:

- the heartbeat emitter: a synthetic point sent every second through the public intake API,
  from outside the pipeline, like a customer would; intake turns it into a marker on every
  partition of every topic;
- watermarks: a store advances its per-partition watermark once it has durably applied
  everything up to a heartbeat, and publishes it in the registry;
- the completeness gate: "complete through T" when every store and partition a query needs
  has a watermark >= T;
- the monitor evaluator: judges a window only once it is complete (states OK, Warn, Alert,
  No Data per group; transitions recorded and sent to a webhook).
"""
