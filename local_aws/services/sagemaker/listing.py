"""SageMaker's List* semantics, shared by every kind of resource."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from local_aws.protocol.errors import validation_error

DEFAULT_MAX_RESULTS = 10


def list_page(
    request: dict[str, Any],
    items: list[Any],
    *,
    name: Callable[[Any], str],
    times: dict[str, Callable[[Any], dt.datetime]],
    sort_keys: dict[str, Callable[[Any], Any]],
    status: Callable[[Any], str] | None = None,
    default_order: str = "Descending",
) -> tuple[list[Any], dict[str, str]]:
    """NameContains (any case), StatusEquals, ``<Field>Before``/``<Field>After`` for each of
    ``times``, SortBy, SortOrder (``default_order`` when absent: the API's documented default),
    MaxResults and NextToken (their values the model already checked). Returns the page and
    ``{"NextToken": ...}`` when more follow."""
    if contains := request.get("NameContains"):
        items = [item for item in items if contains.lower() in name(item).lower()]
    if status is not None and (wanted := request.get("StatusEquals")):
        items = [item for item in items if status(item) == wanted]
    for field_name, timestamp in times.items():
        if (before := request.get(f"{field_name}Before")) is not None:
            items = [item for item in items if timestamp(item) < before]
        if (after := request.get(f"{field_name}After")) is not None:
            items = [item for item in items if timestamp(item) > after]
    key = sort_keys[request.get("SortBy", "CreationTime")]  # one for every value the model's enum allows
    items = sorted(items, key=key, reverse=request.get("SortOrder", default_order) == "Descending")
    limit = request.get("MaxResults", DEFAULT_MAX_RESULTS)
    token = str(request.get("NextToken") or "0")
    if not token.isdigit():
        raise validation_error("Invalid pagination token.")
    start = int(token)
    page = items[start : start + limit]
    more = start + len(page) < len(items)
    return page, ({"NextToken": str(start + len(page))} if more else {})


def list_jobs(request: dict[str, Any], jobs: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """List* paging over training or tuning jobs (both have name, status and their times)."""
    return list_page(
        request,
        jobs,
        name=lambda job: job.name,
        status=lambda job: job.status,
        times={
            "CreationTime": lambda job: job.creation_time,
            "LastModifiedTime": lambda job: job.last_modified_time,
        },
        sort_keys={
            "Name": lambda job: job.name,
            "CreationTime": lambda job: job.creation_time,
            "Status": lambda job: job.status,
        },
    )
