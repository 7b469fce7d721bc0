"""The API's routes, made from the CLI's command table, and how a request's values
become a service's keyword arguments (checked as the CLI's parser checks them).

No web framework here: the daemon (:mod:`iovctl.http.api_v1`) and the CLI's client
(:mod:`iovctl.http.client`) both read this table, so the client needs only httpx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from iovctl.cli.commands import INT, Arg, Command
from iovctl.domain.text import shown
from iovctl.domain.validation import check_integer, parse_integer
from iovctl.errors import InvalidInput

PREFIX = "/api/v1"


@dataclass(frozen=True, slots=True)
class Route:
    words: tuple[str, ...]
    method: str
    path: str
    #: Status of a successful answer (when waited for).
    status: int = 200


#: Every command that has a service function, as a route. Two reads also have a
#: route under their object (``/adapters/{adapter}/vfs``, ``/vms/{vm}/nics``).
ROUTES: tuple[Route, ...] = (
    Route(("host",), "GET", "/host"),
    Route(("host", "snapshot"), "GET", "/host/snapshot"),
    Route(("host", "power-cycle"), "POST", "/host/power-cycle"),
    Route(("apply",), "POST", "/apply"),
    Route(("adapter", "list"), "GET", "/adapters"),
    Route(("adapter", "show"), "GET", "/adapters/{name}"),
    Route(("adapter", "enable"), "POST", "/adapters/{name}/enable"),
    Route(("adapter", "disable"), "POST", "/adapters/{name}/disable"),
    Route(("adapter", "set"), "PATCH", "/adapters/{name}"),
    Route(("vf", "list"), "GET", "/vfs"),
    Route(("vf", "list"), "GET", "/adapters/{adapter}/vfs"),
    Route(("switch", "create"), "POST", "/switches", 201),
    Route(("switch", "list"), "GET", "/switches"),
    Route(("switch", "show"), "GET", "/switches/{name}"),
    Route(("switch", "set"), "PATCH", "/switches/{name}"),
    Route(("switch", "delete"), "DELETE", "/switches/{name}"),
    Route(("vm", "create"), "POST", "/vms", 201),
    Route(("vm", "import"), "POST", "/vms/import", 201),
    Route(("vm", "list"), "GET", "/vms"),
    Route(("vm", "show"), "GET", "/vms/{name}"),
    Route(("vm", "delete"), "DELETE", "/vms/{name}"),
    Route(("vm", "start"), "POST", "/vms/{name}/start"),
    Route(("vm", "stop"), "POST", "/vms/{name}/stop"),
    Route(("nic", "list"), "GET", "/nics"),
    Route(("nic", "list"), "GET", "/vms/{vm}/nics"),
    Route(("nic", "add"), "POST", "/vms/{vm}/nics", 201),
    Route(("nic", "show"), "GET", "/vms/{vm}/nics/{nic}"),
    Route(("nic", "set"), "PATCH", "/vms/{vm}/nics/{nic}"),
    Route(("nic", "remove"), "DELETE", "/vms/{vm}/nics/{nic}"),
    Route(("events",), "GET", "/events"),
)


def route_for(words: tuple[str, ...]) -> Route:
    """The main route of a command (the client's way to run it)."""
    return next(r for r in ROUTES if r.words == words)


# -- options ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """One key a route takes: a command's argument as JSON sees it."""

    key: str
    flag: str
    kind: str  # "integer", "boolean" or "string"
    choices: tuple[str, ...] | None
    required: bool
    help: str


def options_of(command: Command) -> dict[str, Option]:
    """The keys of a command (one per ``dest``: ``--iov``/``--no-iov`` are one boolean)."""
    out: dict[str, Option] = {}
    for a in command.args:
        if not a.to_service or a.dest in out:
            continue
        out[a.dest] = _option(a, command)
    return out


def _option(a: Arg, command: Command) -> Option:
    o = a.options
    flag = next((f for f in a.flags if f.startswith("--")), a.dest)
    if o.get("action") in ("store_true", "store_false"):
        kind = "boolean"
    elif o.get("type") == INT:
        kind = "integer"
    else:
        kind = "string"
    positional = not a.flags[0].startswith("-")
    required = (positional and o.get("nargs") != "?") or bool(o.get("required"))
    required = required or bool(command.one_of and set(a.flags) & set(command.one_of))
    choices = tuple(o["choices"]) if "choices" in o else None
    return Option(a.dest, flag, kind, choices, required, str(o.get("help", "")))


def usage(message: str) -> InvalidInput:
    return InvalidInput("usage", message, "see the API's schema: /api/v1/openapi.json")


def _check(option: Option, value: Any) -> Any:
    """A JSON value for ``option``, held to the parser's rules (types, choices)."""
    if option.kind == "integer":
        return check_integer(option.flag, value)
    expected = bool if option.kind == "boolean" else str
    if not isinstance(value, expected):
        raise usage(f"{option.key}: expected a {option.kind}, got {shown(json.dumps(value))}")
    if option.choices is not None and value not in option.choices:
        raise usage(
            f"{option.key}: invalid choice {shown(repr(value))}"
            f" (choose from {', '.join(option.choices)})"
        )
    return value


def _from_query(option: Option, text: str) -> Any:
    if option.kind == "integer":
        return parse_integer(option.flag, text)
    if option.kind == "boolean":
        if text not in ("true", "false"):
            raise usage(f"{option.key}: expected true or false, got {shown(repr(text))}")
        return text == "true"
    return _check(option, text)


def gather(
    route: Route,
    command: Command,
    path: dict[str, str],
    query: list[tuple[str, str]],
    body: Any,
) -> dict[str, Any]:
    """The keyword arguments of the command's service from a request, checked."""
    options = options_of(command)
    given: dict[str, Any] = {}
    for key, text in path.items():
        given[key] = _check(options[key], text)
    if command.writes:
        values = body if body is not None else {}
        if not isinstance(values, dict):
            raise usage("the request body must be a JSON object")
        source = "body"
    else:
        values = {}
        for key, text in query:
            if key in values:
                raise usage(f"{shown(key)} given twice")
            values[key] = text
        source = "query"
    for key, value in values.items():
        option = options.get(key)
        if option is None or key in path:
            known = ", ".join(k for k in options if k not in path) or "none"
            raise usage(f"unknown {source} key {shown(repr(key))} (known: {known})")
        if value is None:
            continue
        given[key] = _check(option, value) if command.writes else _from_query(option, value)
    missing = [o.key for o in options.values() if o.required and o.key not in given]
    if missing:
        raise usage(f"the following keys are required: {', '.join(missing)}")
    return given
