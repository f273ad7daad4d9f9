"""The inverted index's internal read API (docs/architecture.md)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Response
from pydantic import BaseModel, ConfigDict, Field

from stores.inverted.filters import FilterError, from_lists, parse_filter
from stores.inverted.index import InvertedIndex
from stores.runtime.http import BadRequest, check_range, make_app
from stores.runtime.ownership import Ownership
from stores.runtime.serving import ServingGuard

Name = Annotated[str, Field(min_length=1, max_length=200)]


class ResolveRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    org: Annotated[str, Field(min_length=1, max_length=100)]
    metric: Name
    from_: int = Field(alias="from")
    to: int
    exclude: list[Name] | None = None
    include: list[Name] | None = None
    #: a filter tree (stores/inverted/filters.py); excludes ``include``/``exclude``
    filter: dict[str, Any] | None = None
    #: ``org|metric``'s partition: when given, refused (503) unless served here
    partition: Annotated[int, Field(ge=0, lt=2**31)] | None = None


def create_app(index: InvertedIndex, ownership: Ownership) -> FastAPI:
    app = make_app(index.kind, ownership.partitions, ownership.watermarks.snapshot)
    guard = ServingGuard(ownership, index.coverage)

    @app.post("/v1/resolve")
    def resolve(req: ResolveRequest) -> Response:
        check_range(req.from_, req.to)
        for what, value in [("org", req.org), ("metric", req.metric)] + [
            ("tag", t) for t in (*(req.include or ()), *(req.exclude or ()))
        ]:
            if "\x00" in value:
                raise BadRequest(f"{what} must not contain NUL: {value!r}")
        if req.filter is not None:
            if req.include is not None or req.exclude is not None:
                raise BadRequest("filter: 'include'/'exclude' must be absent with a filter")
            try:
                tree = parse_filter(req.filter)
            except FilterError as exc:
                raise BadRequest(str(exc)) from None
        else:
            tree = from_lists(req.include or (), req.exclude or ())
        with guard.serving(req.partition):
            sids = index.resolve_filter(req.org, req.metric, req.from_, req.to, tree)
        body = np.ascontiguousarray(sids, dtype="<u8").tobytes()
        return Response(body, media_type="application/octet-stream")

    return app
