"""The inverted index's internal read API (docs/architecture.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from stores.inverted.index import InvertedIndex
from stores.inverted.postings import to_le_bytes
from stores.runtime.http import BadRequest, check_range, make_app
from stores.runtime.ownership import Ownership

Name = Annotated[str, Field(min_length=1, max_length=200)]


class ResolveRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    org: Annotated[str, Field(min_length=1, max_length=100)]
    metric: Name
    from_: int = Field(alias="from")
    to: int
    include: list[Name] = Field(default_factory=list)
    exclude: list[Name] = Field(default_factory=list)


def create_app(index: InvertedIndex, ownership: Ownership) -> FastAPI:
    app = make_app(index.kind, ownership.partitions)

    @app.post("/v1/resolve")
    def resolve(req: ResolveRequest) -> Response:
        check_range(req.from_, req.to)
        for what, value in [("org", req.org), ("metric", req.metric)] + [
            ("tag", t) for t in (*req.include, *req.exclude)
        ]:
            if "\x00" in value:
                raise BadRequest(f"{what} must not contain NUL: {value!r}")
        sids = index.resolve(req.org, req.metric, req.from_, req.to, req.include, req.exclude)
        return Response(to_le_bytes(sids), media_type="application/octet-stream")

    return app
