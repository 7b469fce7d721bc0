"""The web console: server-rendered pages that stay live, for a person at a browser.

Pages (``/``, ``/adapters``, ``/switches``, ``/vms``, ``/events``) are made of
fragments, each a Jinja2 template fed by one read of :mod:`iovctl.services.api`.
Every page keeps one server-sent event stream open (``/stream``, htmx's SSE
extension): for each batch of new events the stream pushes the rendered event feed
(``feed``) and a ``changed`` event, on which every fragment of the page fetches
itself again (``/fragments/NAME``). A change made here, by the CLI or by a boot unit
shows up without a reload.

Admins (the admin socket) start and stop VMs and set a NIC's IOV weight; the
read-only socket renders no action and refuses every POST (403). Each POST must
carry the page's CSRF token and come from this server's own pages
(:mod:`iovctl.http.csrf`). A refused change is shown in the page as the CLI shows it
(code, message, hint), never as a traceback.

No build step: htmx and its SSE extension are vendored in ``static/`` (see its
NOTICE); no CDN, no inline script (the Content-Security-Policy forbids them).
Must not import adapters or services other than ``api`` and ``views``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from iovctl.domain.validation import parse_integer
from iovctl.errors import InvalidInput, IovctlError, NotFound
from iovctl.http import csrf
from iovctl.http.errors import status_of
from iovctl.http.gateway import Gateway
from iovctl.services import api
from iovctl.services.context import Context
from iovctl.services.views import HostView

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: The files ``/static/`` serves, and their types: nothing else is reachable.
STATIC_FILES = {
    "htmx.min.js": "text/javascript",
    "htmx-ext-sse.min.js": "text/javascript",
    "console.js": "text/javascript",
    "console.css": "text/css",
}
#: Events the feed beside every page shows; the events page shows EVENTS_PAGE.
FEED_SIZE = 12
EVENTS_PAGE = 200
#: A form post is a few short fields; anything longer is not one of ours.
MAX_FORM_BYTES = 16 * 1024

#: Scripts and styles from this server only: a name or an event message that slipped
#: past escaping still could not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- what each fragment shows ------------------------------------------------------------


#: Facts that describe the host rather than pass or fail (shown as text, not yes/no).
_PLAIN_FACTS = frozenset({"cpu_vendor", "kernel_cmdline", "virtual_machine"})


def _facts(host: HostView) -> list[tuple[str, object, bool]]:
    """(label, value, judged) per fact of the host, in the model's order."""
    return [
        (f.name.replace("_", " "), getattr(host.facts, f.name), f.name not in _PLAIN_FACTS)
        for f in fields(host.facts)
    ]


def _host(ctx: Context) -> dict[str, Any]:
    host = api.host_show(ctx)
    return {"host": host, "facts": _facts(host)}


def _vms(ctx: Context) -> dict[str, Any]:
    nics: dict[str, list[Any]] = {}
    for nic in api.nic_list(ctx):
        nics.setdefault(nic.vm, []).append(nic)
    return {"vms": api.vm_list(ctx), "nics": nics}


@dataclass(frozen=True)
class Fragment:
    """A part of a page that renders and refreshes on its own."""

    title: str
    load: Callable[[Context], dict[str, Any]]


FRAGMENTS: dict[str, Fragment] = {
    "host": Fragment("Host readiness", _host),
    "adapters": Fragment("Adapters", lambda c: {"adapters": api.adapter_list(c)}),
    "switches": Fragment("Virtual switches", lambda c: {"switches": api.switch_list(c)}),
    "pools": Fragment("VF pools", lambda c: {"switches": api.switch_list(c)}),
    "vms": Fragment("Virtual machines", _vms),
    "events": Fragment("Events", lambda c: {"events": api.events(c, EVENTS_PAGE)[::-1]}),
}

#: Path -> (menu label, fragments shown, top to bottom).
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "/": ("Host", ("host",)),
    "/adapters": ("Adapters", ("adapters",)),
    "/switches": ("Switches", ("switches",)),
    "/vms": ("VMs", ("pools", "vms")),
    "/events": ("Events", ("events",)),
}


def _feed(ctx: Context) -> list[Any]:
    return api.events(ctx, FEED_SIZE)[::-1]


# -- rendering --------------------------------------------------------------------------


def _clock(when: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(when))


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("iovctl.http", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = _clock
    env.filters["stamp"] = _stamp
    return env


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    """One server-sent event; ``data`` may span lines (each gets its own field)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}event: {event}\n{body}\n"


# -- the router -------------------------------------------------------------------------


def router(gateway: Gateway, role: str) -> APIRouter:
    """The console's pages, fragments, event stream, static files and actions."""
    env = _environment()
    tokens = csrf.CsrfTokens()
    admin = role == "admin"
    r = APIRouter(include_in_schema=False)

    def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(template).render(admin=admin, role=role, **values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def fragment_html(name: str, values: dict[str, Any]) -> Markup:
        return Markup(env.get_template(f"_{name}.html").render(admin=admin, **values))

    def error_html(exc: IovctlError) -> Markup:
        return Markup(env.get_template("_error.html").render(error=exc.to_dict()))

    def page(path: str) -> Callable[[Request], Any]:
        label, names = PAGES[path]

        def load(ctx: Context) -> tuple[dict[str, dict[str, Any]], list[Any], int]:
            parts = {name: FRAGMENTS[name].load(ctx) for name in names}
            return parts, _feed(ctx), api.newest_event(ctx)

        async def show(request: Request) -> Response:
            cookie = request.cookies.get(csrf.COOKIE)
            token = cookie if cookie is not None and tokens.valid(cookie) else tokens.issue()
            try:
                parts, feed, newest = await gateway.read(load)
                sections = [(n, FRAGMENTS[n].title, fragment_html(n, parts[n])) for n in names]
                error = None
            except IovctlError as exc:  # a store that is busy or too new: say so
                sections, feed, newest, error = [], [], 0, error_html(exc)
            response = render(
                "page.html",
                status=200 if error is None else 503,
                title=label,
                path=path,
                pages=PAGES,
                sections=sections,
                feed=feed,
                since=newest,
                error=error,
                csrf_token=token,
            )
            if token != cookie:
                response.set_cookie(
                    csrf.COOKIE, token, httponly=True, samesite="strict", path="/"
                )
            return response

        show.__name__ = f"console_{label.lower()}"
        return show

    for path in PAGES:
        r.add_api_route(path, page(path), methods=["GET"], response_class=HTMLResponse)

    @r.get("/fragments/{name}", response_class=HTMLResponse)
    async def fragment(name: str) -> Response:
        part = FRAGMENTS.get(name)
        if part is None:
            return render("_error.html", 404, error=_unknown_fragment(name).to_dict())
        try:
            values = await gateway.read(part.load)
        except IovctlError as exc:
            return render("_error.html", status_of(exc), error=exc.to_dict())
        return render(f"_{name}.html", **values)

    @r.get("/stream")
    async def stream(request: Request, since: int = 0) -> StreamingResponse:
        # EventSource sends the last id it saw when it reconnects: go on from there.
        last = request.headers.get("last-event-id", "")
        start = int(last) if last.isascii() and last.isdigit() else max(since, 0)

        async def events() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"
            async for batch in gateway.follow_events(start):
                newest = batch[-1].seq
                # First the word to refresh (the fragments' fetches start at once),
                # then the feed, which takes one more read and carries the id a
                # reconnecting browser resumes from.
                kinds = sorted({e.object_kind for e in batch})
                yield _sse("changed", " ".join(kinds))
                feed = await gateway.read(_feed)
                yield _sse("feed", env.get_template("_feed.html").render(feed=feed), newest)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @r.get("/static/{name}")
    async def static(name: str) -> Response:
        kind = STATIC_FILES.get(name)
        if kind is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(
            STATIC / name,
            media_type=kind,
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    # -- actions (admin only) -------------------------------------------------------------

    def fail(request: Request, error: dict[str, str], status: int) -> HTMLResponse:
        """A refusal as htmx swaps it into the page, or as a page of its own."""
        if request.headers.get("hx-request") == "true":
            return render("_error.html", status, error=error)
        return render("error.html", status, error=error, title="Error", pages=PAGES, path="")

    async def act(
        request: Request, change: Callable[[dict[str, str]], Callable[[Context], str]]
    ) -> Response:
        """Check the caller, run ``change`` as one write, and answer with what happened:
        a message fragment for htmx (whose ``HX-Trigger`` refreshes the page's
        fragments), or a redirect back for a plain form."""
        if not admin:
            return fail(request, _READ_ONLY, 403)
        body = b""
        async for chunk in request.stream():  # not read whole: a form is small
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return fail(request, _TOO_LARGE, 413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        origin_ok = csrf.same_origin(
            request.headers.get("origin"),
            request.headers.get("sec-fetch-site"),
            request.url.scheme,
            request.headers.get("host"),
        )
        sent = request.headers.get(csrf.HEADER) or form.get(csrf.FIELD)
        if not origin_ok or not tokens.matches(request.cookies.get(csrf.COOKIE), sent):
            return fail(request, _FORGED, 403)
        try:
            message = await gateway.write(change(form))
        except IovctlError as exc:
            return fail(request, exc.to_dict(), status_of(exc))
        except Exception:  # never a traceback in the page; the log has it
            log.exception("console action %s failed", request.url.path)
            return fail(request, _INTERNAL, 500)
        if request.headers.get("hx-request") != "true":
            return Response(status_code=303, headers={"Location": "/vms"})
        response = render("_done.html", message=message)
        response.headers["HX-Trigger"] = "iovctl-changed"
        return response

    def vm_action(verb: str, call: Callable[[Context, str], object]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            def change(form: dict[str, str]) -> Callable[[Context], str]:
                vm = _field(form, "vm")

                def run(ctx: Context) -> str:
                    call(ctx, vm)
                    return f"VM {vm} {verb}"

                return run

            return await act(request, change)

        return handler

    r.add_api_route("/vms/start", vm_action("started", api.vm_start), methods=["POST"])
    r.add_api_route("/vms/stop", vm_action("stopped", api.vm_stop), methods=["POST"])

    @r.post("/nics/weight")
    async def nic_weight(request: Request) -> Response:
        def change(form: dict[str, str]) -> Callable[[Context], str]:
            vm, nic = _field(form, "vm"), _field(form, "nic")
            weight = parse_integer("IOV weight", _field(form, "iov_weight").strip())

            def run(ctx: Context) -> str:
                api.nic_set(ctx, vm, nic, iov_weight=weight)
                return f"NIC {vm}/{nic}: IOV weight {weight}"

            return run

        return await act(request, change)

    return r


def _field(form: dict[str, str], name: str) -> str:
    value = form.get(name)
    if value is None:
        raise InvalidInput("missing-field", f"the form has no {name!r}", "reload the page")
    return value


_READ_ONLY = {
    "code": "read-only",
    "message": "this console is read-only",
    "hint": "use the admin socket to change anything",
}
_TOO_LARGE = {"code": "form-too-large", "message": "the form is too large", "hint": ""}
_FORGED = {
    "code": "csrf-refused",
    "message": "the request did not come from this console's own page",
    "hint": "reload the page and try again",
}
_INTERNAL = {
    "code": "internal-error",
    "message": "the change failed unexpectedly",
    "hint": "see the daemon's log",
}


def _unknown_fragment(name: str) -> NotFound:
    return NotFound("not-found", f"no console fragment {name!r}", "reload the page")
