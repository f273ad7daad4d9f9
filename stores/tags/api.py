"""The tag index's internal read API (docs/architecture.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from stores.runtime.http import BadRequest, make_app
from stores.runtime.ownership import Ownership
from stores.runtime.serving import ServingGuard
from stores.tags.index import TagIndex

U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
Org = Annotated[str, Field(min_length=1, max_length=100)]


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org: Org
    sids: list[U64]
    #: the sids' ``org|metric`` partition: when given, refused (503) unless served here
    partition: Partition | None = None


Short = Annotated[str, Field(max_length=100)]
Partition = Annotated[int, Field(ge=0, lt=2**31)]


def _unknown(org: str, metric: str) -> JSONResponse:
    return JSONResponse({"errors": [f"metric {metric!r} not found"]}, status_code=404)


def _check_name(what: str, value: str) -> None:
    if "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL")


def create_app(index: TagIndex, ownership: Ownership) -> FastAPI:
    app = make_app(index.kind, ownership.partitions, ownership.watermarks.snapshot)
    guard = ServingGuard(ownership, index.coverage)

    @app.post("/v1/series/lookup")
    def lookup(req: LookupRequest) -> dict[str, Any]:
        _check_name("org", req.org)
        with guard.serving(req.partition):
            found = index.lookup(req.org, req.sids)
        return {
            "series": [
                {"sid": sid, "metric": i.metric, "type": i.mtype.label, "tags": list(i.tags)}
                for sid, i in found
            ]
        }

    @app.get("/v1/metrics")
    def metrics(
        org: Annotated[Org, Query()],
        from_: Annotated[int, Query(alias="from")] = 0,
        prefix: Annotated[str, Query(max_length=200)] = "",
    ) -> dict[str, Any]:
        _check_name("org", org)
        _check_name("prefix", prefix)
        return {"metrics": index.metrics(org, from_, prefix)}

    @app.get("/v1/catalog")
    def catalog(
        org: Annotated[Org, Query()],
        from_: Annotated[int, Query(alias="from")] = 0,
        prefix: Annotated[str, Query(max_length=200)] = "",
    ) -> dict[str, Any]:
        """Metrics with their last-seen index bucket start (hour precision)."""
        _check_name("org", org)
        _check_name("prefix", prefix)
        rows = index.catalog(org, from_, prefix)
        return {"metrics": [{"metric": m, "last_seen": last} for m, last in rows]}

    @app.get("/v1/metrics/{metric}/describe", response_model=None)
    def describe(
        metric: str,
        org: Annotated[Org, Query()],
        from_: Annotated[int, Query(alias="from")] = 0,
        partition: Annotated[Partition | None, Query()] = None,
    ) -> dict[str, Any] | JSONResponse:
        """Tags and tag key -> values of a metric; 404 if this instance never saw it."""
        _check_name("org", org)
        _check_name("metric", metric)
        with guard.serving(partition):
            if not index.known(org, metric):
                return _unknown(org, metric)
            return {
                "metric": metric,
                "tags": index.tags(org, metric, from_),
                "tag_values": index.tag_values(org, metric, from_),
            }

    @app.get("/v1/metrics/{metric}/metadata", response_model=None)
    def get_metadata(
        metric: str,
        org: Annotated[Org, Query()],
        partition: Annotated[Partition | None, Query()] = None,
    ) -> dict[str, Any] | JSONResponse:
        _check_name("org", org)
        _check_name("metric", metric)
        with guard.serving(partition):
            found = index.metadata(org, metric)
        return _unknown(org, metric) if found is None else {"metadata": found}

    @app.get("/v1/metrics/{metric}/tags")
    def metric_tags(
        metric: str,
        org: Annotated[Org, Query()],
        from_: Annotated[int, Query(alias="from")] = 0,
        partition: Annotated[Partition | None, Query()] = None,
    ) -> dict[str, Any]:
        _check_name("org", org)
        _check_name("metric", metric)
        with guard.serving(partition):
            return {"tags": index.tags(org, metric, from_)}

    return app
