"""``/api/v1``: the same objects as ``-o json``, one route per command.

Routes are made from the CLI's command table (:mod:`iovctl.cli.commands`): each
command with a service function has a route in :data:`ROUTES`, and its handler
passes the same plain arguments, named as the service's keyword arguments (the
options' ``dest``: ``num_vfs``, ``iov_weight``, ``object_name``), to the same
function. Object names go in the path; a read's other options in the query string
(numbers parsed as the CLI parses them); a write's in a JSON object body (numbers
as JSON integers, flags as booleans). Unknown keys, wrong JSON types and bad choices
are refused as the CLI's parser refuses them (``error[usage]``, 400), numbers by
the services (``error[invalid-number]``).

Writes answer when done (200, 201 for a create), or with ``?wait=false`` at once:
202 and an operation to poll at ``/api/v1/operations/{id}``. Live events:
``/api/v1/events/stream`` (server-sent events, ``id:`` = the event's seq).
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.convertors import Convertor, register_url_convertor

from iovctl.cli.commands import BY_WORDS, Command
from iovctl.domain.text import shown
from iovctl.errors import NotFound
from iovctl.http.auth import require_admin
from iovctl.http.gateway import Gateway
from iovctl.http.routes import PREFIX, ROUTES, Option, Route, gather, options_of, usage
from iovctl.services import api, schema
from iovctl.services.context import Context
from iovctl.services.views import EventView, to_json


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise usage(f"the request body is not JSON: {exc}") from None


def _wait(query: list[tuple[str, str]]) -> tuple[bool, list[tuple[str, str]]]:
    waits = [v for k, v in query if k == "wait"]
    rest = [(k, v) for k, v in query if k != "wait"]
    if len(waits) > 1 or (waits and waits[0] not in ("true", "false")):
        raise usage("wait: expected one of true or false")
    return (not waits or waits[0] == "true"), rest


# -- OpenAPI --------------------------------------------------------------------------

#: View schemas (``$defs`` of the -o json schema), shared by every route.
SCHEMAS: dict[str, Any] = {}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "hint"],
            "properties": {k: {"type": "string"} for k in ("code", "message", "hint")},
        }
    },
}

OPERATION_SCHEMA = {
    "type": "object",
    "required": ["id", "command", "state", "started", "finished", "status", "result"],
    "properties": {
        "id": {"type": "integer"},
        "command": {"type": "string"},
        "state": {"enum": ["running", "succeeded", "failed"]},
        "started": {"type": "number"},
        "finished": {"type": ["number", "null"]},
        "status": {"type": ["integer", "null"]},
        "result": {},
    },
}


def _components(value: Any) -> Any:
    """A schema with its ``$defs`` references pointing into ``components/schemas``."""
    return json.loads(json.dumps(value).replace('"#/$defs/', '"#/components/schemas/'))


def _response_schema(command: Command) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    out = schema.schema_of(typing.get_type_hints(command.call)["return"], defs)
    SCHEMAS.update(_components(defs))
    return typing.cast(dict[str, Any], _components(out))


def _param_schema(option: Option) -> dict[str, Any]:
    if option.choices is not None:
        return {"type": "string", "enum": list(option.choices)}
    return {"type": option.kind}


def _json(schema_: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema_}}}


def _openapi(route: Route, command: Command) -> dict[str, Any]:
    options = options_of(command)
    path_keys = [k for k in options if "{" + k + "}" in route.path]
    params: list[dict[str, Any]] = [
        {"name": k, "in": "path", "required": True, "schema": {"type": "string"}} for k in path_keys
    ]
    error = {"$ref": "#/components/schemas/Error"}
    responses: dict[str, Any] = {
        str(route.status): _json(_response_schema(command), "what `-o json` prints"),
        "400": _json(error, "invalid input"),
        "404": _json(error, "no such object"),
    }
    extra: dict[str, Any] = {"parameters": params, "responses": responses}
    rest = {k: o for k, o in options.items() if k not in path_keys}
    if command.writes:
        params.append(
            {"name": "wait", "in": "query", "required": False, "schema": {"type": "boolean"}}
        )
        responses["202"] = _json(
            {
                "type": "object",
                "properties": {"operation": {"$ref": "#/components/schemas/Operation"}},
            },
            "started; poll the operation (?wait=false)",
        )
        responses["403"] = _json(error, "read-only connection")
        responses["409"] = _json(error, "refused by the current state")
        if rest:
            body = {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    k: {**_param_schema(o), "description": o.help} for k, o in rest.items()
                },
                "required": [k for k, o in rest.items() if o.required],
            }
            required = any(o.required for o in rest.values())
            extra["requestBody"] = {"required": required, **_json(body, "the command's options")}
    else:
        params.extend(
            {
                "name": k,
                "in": "query",
                "required": o.required,
                "description": o.help,
                "schema": _param_schema(o),
            }
            for k, o in rest.items()
        )
    return extra


# -- the router -----------------------------------------------------------------------


class _Segment(Convertor[str]):
    """A name in the path, the empty one included: ``vm show ''`` is answered as the
    CLI answers it (``unknown-vm``), not as an unknown route."""

    regex = "[^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", _Segment())


def router(gateway: Gateway, role: str) -> APIRouter:
    r = APIRouter(prefix=PREFIX)

    # Before the command routes: /events/stream is not an event's seq.
    @r.get(
        "/events/stream",
        summary="events as they happen (server-sent events; resume with Last-Event-ID)",
        response_class=StreamingResponse,
        openapi_extra={
            "parameters": [
                {"name": "since", "in": "query", "schema": {"type": "integer"}},
                {"name": "level", "in": "query", "schema": {"enum": list(api.LEVELS)}},
                {"name": "kind", "in": "query", "schema": {"enum": list(api.KINDS)}},
                {"name": "object_name", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "text/event-stream; data: an EventView"}},
        },
    )
    async def events_stream(request: Request) -> Response:
        return await _event_stream(gateway, request)

    @r.get(
        "/operations",
        summary="writes started with ?wait=false, newest last",
        openapi_extra={
            "responses": {
                "200": _json(
                    {"type": "array", "items": {"$ref": "#/components/schemas/Operation"}},
                    "operations",
                )
            }
        },
    )
    async def operations(request: Request) -> Response:
        if request.query_params:
            raise usage("this route takes no query keys")
        return JSONResponse([op.to_json() for op in gateway.operations.recent()])

    @r.get(
        "/operations/{op_id}",
        summary="one write started with ?wait=false: running, succeeded or failed",
        openapi_extra={
            "parameters": [
                {"name": "op_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Operation"}, "the operation"),
                "404": _json({"$ref": "#/components/schemas/Error"}, "unknown"),
            },
        },
    )
    async def operation(request: Request) -> Response:
        text = request.path_params["op_id"]
        op = gateway.operations.find(int(text)) if text.isdigit() and len(text) < 19 else None
        if op is None:
            raise NotFound(
                "operation-not-found",
                f"no operation {shown(text)!r} (the daemon keeps the last 1000, until it restarts)",
                "see: GET /api/v1/operations",
            )
        return JSONResponse(op.to_json())

    for route in ROUTES:
        command = BY_WORDS[route.words]
        r.add_api_route(
            re.sub(r"\{(\w+)\}", r"{\1:segment}", route.path),
            _endpoint(gateway, route, command),
            methods=[route.method],
            summary=command.help,
            description=f"`iovctl {command.name}`",
            name=f"{command.name} {route.path}",
            openapi_extra=_openapi(route, command),
            response_class=JSONResponse,
        )
    return r


def _endpoint(
    gateway: Gateway, route: Route, command: Command
) -> Callable[[Request], typing.Awaitable[Response]]:
    call = command.call
    assert call is not None

    async def endpoint(request: Request) -> Response:
        if command.writes:
            require_admin(request)
        query = list(request.query_params.multi_items())
        wait = True
        if command.writes:
            wait, query = _wait(query)
            if query:
                raise usage(
                    f"unknown query key {shown(repr(query[0][0]))}: a write takes its options in the body"
                )
        body = await _json_body(request) if command.writes else None
        kwargs = gather(route, command, dict(request.path_params), query, body)

        def run(ctx: Context) -> Any:
            return to_json(call(ctx, **kwargs))

        if not command.writes:
            return JSONResponse(await gateway.read(run))
        if wait:
            return JSONResponse(await gateway.write(run), status_code=route.status)
        op = gateway.operations.start(command.name, route.status, lambda: gateway.write(run))
        return JSONResponse(
            {"operation": op.to_json()},
            status_code=202,
            headers={"Location": f"{PREFIX}/operations/{op.id}"},
        )

    return endpoint


async def _event_stream(gateway: Gateway, request: Request) -> Response:
    command = BY_WORDS[("events",)]
    query = list(request.query_params.multi_items())
    resume = request.headers.get("last-event-id")
    if resume is not None:
        query = [(k, v) for k, v in query if k != "since"] + [("since", resume.strip())]
    route = Route(("events",), "GET", "/events/stream")
    kwargs = gather(route, command, {}, query, None)
    if "limit" in kwargs:
        raise usage("unknown query key 'limit': a stream has no end to count back from")
    since: int = kwargs.pop("since", None) or 0
    if not any(k == "since" for k, _ in query):
        since = await gateway.read(api.newest_event)  # from now on, unless told
    # Checked once up front (bad level, kind): an error before the stream starts.
    await gateway.read(lambda c: api.events(c, 1, since, **kwargs))

    async def lines() -> AsyncIterator[str]:
        yield ": iovctl events\n\n"  # headers go out now; clients see the stream open
        after = since
        async for batch in gateway.follow_events(since):
            picked: list[EventView] = batch
            if kwargs:
                last = batch[-1].seq
                found = await gateway.read(_events_after(after, kwargs))
                picked = [e for e in found if e.seq <= last]
            after = batch[-1].seq
            for e in picked:
                yield f"id: {e.seq}\ndata: {json.dumps(to_json(e))}\n\n"

    return StreamingResponse(
        lines(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _events_after(since: int, filters: dict[str, Any]) -> Callable[[Context], list[EventView]]:
    def read(ctx: Context) -> list[EventView]:
        return api.events(ctx, None, since, **filters)

    return read
