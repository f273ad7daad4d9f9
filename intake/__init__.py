"""The HTTP intake service: Datadog-compatible series submission -> Kafka (docs/intake.md).

Pure parts (body decoding, JSON parsing and validation, the announced-series cache,
counters) are separate from the shell (the FastAPI app and the Kafka producer).
"""
