"""The tag index's internal read API (docs/architecture.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from stores.runtime.http import BadRequest, make_app
from stores.runtime.ownership import Ownership
from stores.tags.index import TagIndex

U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
Org = Annotated[str, Field(min_length=1, max_length=100)]


class LookupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org: Org
    sids: list[U64]


def _check_name(what: str, value: str) -> None:
    if "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL")


def create_app(index: TagIndex, ownership: Ownership) -> FastAPI:
    app = make_app(index.kind, ownership.partitions)

    @app.post("/v1/series/lookup")
    def lookup(req: LookupRequest) -> dict[str, Any]:
        _check_name("org", req.org)
        return {
            "series": [
                {"sid": sid, "metric": i.metric, "type": i.mtype.label, "tags": list(i.tags)}
                for sid, i in index.lookup(req.org, req.sids)
            ]
        }

    @app.get("/v1/metrics")
    def metrics(
        org: Annotated[Org, Query()], from_: Annotated[int, Query(alias="from")] = 0
    ) -> dict[str, Any]:
        _check_name("org", org)
        return {"metrics": index.metrics(org, from_)}

    @app.get("/v1/metrics/{metric}/tags")
    def metric_tags(
        metric: str, org: Annotated[Org, Query()], from_: Annotated[int, Query(alias="from")] = 0
    ) -> dict[str, Any]:
        _check_name("org", org)
        _check_name("metric", metric)
        return {"tags": index.tags(org, metric, from_)}

    return app
