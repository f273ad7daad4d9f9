"""Describe and explore endpoints (issue 4 items 2 and 6), in the shapes the official
``datadog-api-client`` deserializes:

- ``GET /api/v2/metrics/{name}/all-tags`` -> v2 ``MetricAllTagsResponse``
- ``GET /api/v1/search?q=metrics:<prefix>`` -> v1 ``MetricSearchResponse``
- ``GET``/``PUT /api/v1/metrics/{name}`` -> v1 ``MetricMetadata`` (stored in the tag index)

Same keys and error bodies as query/app.py: 403 for keys, 400 naming the parameter, 404
for a metric the org never sent (another org's metric is unknown too: nothing leaks).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

import query.app  # authenticate; a module import, since query.app includes this router
from query.distributions import with_distribution_type
from query.params import BadParameter
from query.responses import error_body
from query.stores_client import ExploreClient, explore_client
from strata.keys import KeyStore
from strata.naming import InvalidName, normalize_metric_name

SEARCH_PREFIX = "metrics:"
Short = Annotated[str, Field(max_length=100)]


class MetricMetadataUpdate(BaseModel):
    """The writable fields of v1 ``MetricMetadata`` (``integration`` is read-only at
    Datadog; the client may still send it back, so it is accepted and stored)."""

    model_config = ConfigDict(extra="forbid")

    type: Short | None = None
    unit: Short | None = None
    per_unit: Short | None = None
    short_name: Short | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    statsd_interval: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    integration: Short | None = None


def metric_name(raw: str) -> str:
    """``raw`` if it is a valid (normalised) metric name, else :class:`BadParameter`."""
    try:
        if normalize_metric_name(raw) == raw:
            return raw
    except InvalidName as exc:
        raise BadParameter(f"path parameter 'name' is not a metric name: {exc}") from None
    raise BadParameter(
        f"path parameter 'name' is not a metric name: {raw[:60]!r} "
        "(letters, digits, '_' and '.', starting with a letter)"
    )


def search_prefix(q: str | None) -> str:
    """The prefix of ``q=metrics:<prefix>``; :class:`BadParameter` for anything else."""
    if q is None or not q.startswith(SEARCH_PREFIX):
        raise BadParameter(f"parameter 'q' must be 'metrics:<prefix>', got {str(q)[:60]!r}")
    prefix = q[len(SEARCH_PREFIX) :].strip()
    if "\x00" in prefix or len(prefix) > 200:
        raise BadParameter("parameter 'q': the prefix must be at most 200 characters, no NUL")
    return prefix


def all_tags_response(name: str, tags: list[str]) -> dict[str, Any]:
    return {"data": {"id": name, "type": "metrics", "attributes": {"tags": tags}}}


def not_found(name: str) -> JSONResponse:
    return JSONResponse(error_body(f"metric {name!r} not found"), status_code=404)


def explore_router(client: object, keys: KeyStore) -> APIRouter:
    """The explore endpoints over ``client`` (a store client; see
    :func:`query.stores_client.explore_client`)."""
    router = APIRouter()
    explore = explore_client(client)

    def scoped(request: Request) -> tuple[str, ExploreClient]:
        org = query.app.authenticate(request, keys)
        if explore is None:
            raise _Unsupported
        return org, explore

    @router.get("/api/v2/metrics/{name}/all-tags", response_model=None)
    def all_tags(name: str, request: Request) -> dict[str, Any] | JSONResponse:
        org, ex = scoped(request)
        metric = metric_name(name)
        tags = ex.describe(org, metric, 0)
        return not_found(metric) if tags is None else all_tags_response(metric, tags)

    @router.get("/api/v1/search")
    def search(request: Request) -> dict[str, Any]:
        org, ex = scoped(request)
        prefix = search_prefix(request.query_params.get("q"))
        return {"results": {"metrics": [m for m, _ in ex.catalog(org, 0, prefix)]}}

    @router.get("/api/v1/metrics/{name}", response_model=None)
    def get_metadata(name: str, request: Request) -> dict[str, Any] | JSONResponse:
        org, ex = scoped(request)
        metric = metric_name(name)
        found = ex.get_metadata(org, metric)
        if found is None:
            return not_found(metric)
        return with_distribution_type(client, org, metric, found)

    @router.put("/api/v1/metrics/{name}", response_model=None)
    async def put_metadata(name: str, request: Request) -> dict[str, Any] | JSONResponse:
        org, ex = scoped(request)
        metric = metric_name(name)
        try:
            update = MetricMetadataUpdate.model_validate_json(await request.body())
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise BadParameter(f"invalid metric metadata: {problems}") from None
        fields = update.model_dump(exclude_unset=True)
        # The store call blocks: run it off the event loop.
        found = await run_in_threadpool(ex.put_metadata, org, metric, fields)
        return not_found(metric) if found is None else found

    return router


class _Unsupported(BadParameter):
    """The configured store client has no explore calls."""

    def __init__(self) -> None:
        super().__init__("metric exploration is not available with this store client")
