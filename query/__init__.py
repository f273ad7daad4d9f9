"""The query service: Datadog v1 metric queries over the store read APIs (docs/query.md).

Pure parts (the query language, interval choice, numpy aggregation, partition routing and
response shapes) are separate from the shell (HTTP clients to the stores and the FastAPI app).
"""
