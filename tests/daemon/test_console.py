"""The web console without a browser: pages and fragments, the CSRF and role checks
on every POST, escaping, the event stream's wire format, the vendored scripts.

The browser tests (tests/browser) show the same console working in Chromium.
"""

from __future__ import annotations

import hashlib
import html.parser
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.browser.server import demo_host, serve

from iovctl.http import console as console_module
from iovctl.http import csrf
from iovctl.http.app import Role
from iovctl.http.gateway import Gateway
from iovctl.services import api
from iovctl.services.views import EventView

PAGES = ("/", "/adapters", "/switches", "/vms", "/events")


@pytest.fixture
def gateway(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return demo_host(tmp_path_factory.getbasetemp(), tmp_path / "state")


@pytest.fixture
def urls(gateway: Gateway) -> Iterator[dict[Role, str]]:
    """The console served for real (uvicorn on loopback), once per role."""
    with serve(gateway) as urls:
        yield urls


def client(urls: dict[Role, str], role: Role = "admin") -> httpx.Client:
    return httpx.Client(base_url=urls[role], timeout=10)


def page_token(c: httpx.Client, path: str = "/vms") -> str:
    got = c.get(path)
    assert got.status_code == 200
    token = c.cookies.get(csrf.COOKIE)
    assert token is not None and token in got.text  # the page repeats it for htmx
    return token


def state_of(gateway: Gateway, vm: str) -> str:
    return gateway.call(lambda c: api.vm_show(c, vm), writes=False).state


# -- pages and fragments -------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_html_under_a_strict_policy(
    gateway: Gateway, urls: dict[Role, str], path: str
) -> None:
    with client(urls) as c:
        got = c.get(path)
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in got.headers["content-security-policy"]
    assert "<script>" not in got.text and "style=" not in got.text  # nothing inline
    assert "http://" not in got.text and "https://" not in got.text  # no CDN


@pytest.mark.parametrize("name", sorted(console_module.FRAGMENTS))
def test_every_fragment_renders_alone(gateway: Gateway, urls: dict[Role, str], name: str) -> None:
    with client(urls) as c:
        got = c.get(f"/fragments/{name}")
    assert got.status_code == 200
    assert "<html" not in got.text


def test_an_unknown_fragment_or_file_is_not_found(gateway: Gateway, urls: dict[Role, str]) -> None:
    with client(urls) as c:
        assert c.get("/fragments/nothing").status_code == 404
        assert c.get("/static/NOTICE.md").status_code == 404
        assert c.get("/static/..%2f..%2fconsole.py").status_code == 404


def test_the_pool_bar_counts_are_the_services(gateway: Gateway, urls: dict[Role, str]) -> None:
    switch = gateway.call(lambda c: api.switch_show(c, "external"), writes=False)
    with client(urls) as c:
        text = c.get("/fragments/pools").text
    used = re.search(r'data-pool="external" data-used="(\d+)" data-enabled="(\d+)"', text)
    assert used is not None
    assert (int(used[1]), int(used[2])) == (
        switch.iov_virtual_functions_in_use,
        switch.iov_virtual_function_count,
    )


# -- who may post --------------------------------------------------------------------------


def test_an_admin_starts_a_vm_with_the_token(gateway: Gateway, urls: dict[Role, str]) -> None:
    with client(urls) as c:
        token = page_token(c)
        got = c.post(
            "/vms/start",
            data={"vm": "batch"},
            headers={
                csrf.HEADER: token,
                "HX-Request": "true",
                "Sec-Fetch-Site": "same-origin",
                "Origin": urls["admin"],
            },
        )
    assert got.status_code == 200, got.text
    assert got.headers["hx-trigger"] == "iovctl-changed"
    assert state_of(gateway, "batch") == "running"


def test_a_plain_form_post_is_redirected_back(gateway: Gateway, urls: dict[Role, str]) -> None:
    with client(urls) as c:
        token = page_token(c)
        got = c.post("/vms/start", data={"vm": "batch", csrf.FIELD: token})
    assert got.status_code == 303 and got.headers["location"] == "/vms"
    assert state_of(gateway, "batch") == "running"


@pytest.mark.parametrize(
    "case",
    ["no token", "no cookie", "other token", "foreign token", "cross-site", "other origin"],
)
def test_a_forged_post_is_refused_and_changes_nothing(
    gateway: Gateway, urls: dict[Role, str], case: str
) -> None:
    with client(urls) as c:
        token = page_token(c)
        headers = {csrf.HEADER: token, "HX-Request": "true"}
        if case == "no token":
            del headers[csrf.HEADER]
        elif case == "no cookie":
            c.cookies.clear()
        elif case == "other token":
            headers[csrf.HEADER] = page_token(client(urls))
        elif case == "foreign token":  # signed by another process: a planted cookie
            forged = csrf.CsrfTokens().issue()
            c.cookies.set(csrf.COOKIE, forged)
            headers[csrf.HEADER] = forged
        elif case == "cross-site":
            headers["Sec-Fetch-Site"] = "cross-site"
        elif case == "other origin":
            headers["Origin"] = "http://evil.example"
        got = c.post("/vms/start", data={"vm": "batch"}, headers=headers)
    assert got.status_code == 403
    assert 'data-code="csrf-refused"' in got.text
    assert state_of(gateway, "batch") == "off"


def test_the_reader_renders_no_action_and_refuses_every_post(
    gateway: Gateway, urls: dict[Role, str]
) -> None:
    with client(urls, "reader") as c:
        for path in PAGES:
            text = c.get(path).text
            assert "<button" not in text and "<form" not in text and "hx-post" not in text
        token = page_token(c)
        for path, data in (
            ("/vms/start", {"vm": "batch"}),
            ("/vms/stop", {"vm": "web1"}),
            ("/nics/weight", {"vm": "web1", "nic": "nic0", "iov_weight": "1"}),
        ):
            got = c.post(path, data=data, headers={csrf.HEADER: token, "HX-Request": "true"})
            assert got.status_code == 403 and 'data-code="read-only"' in got.text
    assert state_of(gateway, "batch") == "off" and state_of(gateway, "web1") == "running"


# -- refusals and escaping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        ({"vm": "web1", "nic": "nic0", "iov_weight": "101"}, 400, "invalid-weight"),
        ({"vm": "web1", "nic": "nic0", "iov_weight": "1_0"}, 400, "invalid-number"),
        ({"vm": "web1", "nic": "nic0"}, 400, "missing-field"),
        ({"vm": "nobody", "nic": "nic0", "iov_weight": "5"}, 404, None),
    ],
)
def test_a_refused_weight_is_shown_as_the_cli_shows_it(
    gateway: Gateway, urls: dict[Role, str], data: dict[str, str], status: int, code: str | None
) -> None:
    before = gateway.call(lambda c: api.nic_show(c, "web1", "nic0"), writes=False)
    with client(urls) as c:
        token = page_token(c)
        got = c.post("/nics/weight", data=data, headers={csrf.HEADER: token, "HX-Request": "true"})
    assert got.status_code == status
    assert 'class="error"' in got.text and "hint:" in got.text
    assert "Traceback" not in got.text
    if code is not None:
        assert f'data-code="{code}"' in got.text
    assert gateway.call(lambda c: api.nic_show(c, "web1", "nic0"), writes=False) == before


def test_an_oversized_form_is_refused_unread(gateway: Gateway, urls: dict[Role, str]) -> None:
    with client(urls) as c:
        token = page_token(c)
        got = c.post(
            "/vms/start",
            content=b"vm=batch&pad=" + b"x" * 100_000,
            headers={
                csrf.HEADER: token,
                "HX-Request": "true",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
    assert got.status_code == 413
    assert state_of(gateway, "batch") == "off"


def test_a_name_is_escaped_in_an_error(gateway: Gateway, urls: dict[Role, str]) -> None:
    with client(urls) as c:
        token = page_token(c)
        got = c.post(
            "/vms/start",
            data={"vm": "<img src=x onerror=alert(1)>"},
            headers={csrf.HEADER: token, "HX-Request": "true"},
        )
    assert got.status_code in (400, 404)
    assert "<img" not in got.text and "&lt;img" in got.text


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags.append(tag)


def _tags(text: str) -> list[str]:
    parser = _Tags()
    parser.feed(text)
    return parser.tags


@given(st.text(alphabet=st.sampled_from("<>&\"'/= abcimg\n"), max_size=40))
def test_no_event_text_can_add_an_element_to_the_feed(text: str) -> None:
    env = console_module._environment()
    event = EventView(7, 0.0, "info", text, "vm", text, text)
    plain = EventView(7, 0.0, "info", "x", "vm", "x", "x")
    feed = env.get_template("_feed.html")
    assert _tags(feed.render(feed=[event])) == _tags(feed.render(feed=[plain]))


# -- the event stream ---------------------------------------------------------------------------


def test_an_event_with_lines_is_one_server_sent_event() -> None:
    assert console_module._sse("feed", "<li>a\n</li>", 9) == (
        "id: 9\nevent: feed\ndata: <li>a\ndata: </li>\n\n"
    )


def _stream_events(url: str, headers: dict[str, str], count: int) -> Iterator[dict[str, str]]:
    """The first ``count`` events of the stream at ``url``, as field -> value."""
    with httpx.stream("GET", url, headers=headers, timeout=10) as got:
        assert got.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in got.iter_lines():
            if line == "":
                if "event" in fields:
                    yield fields
                    count -= 1
                    if count == 0:
                        return
                fields = {}
                continue
            key, _, value = line.partition(": ")
            fields[key] = fields[key] + "\n" + value if key in fields else value


def test_the_stream_pushes_a_change_and_the_feed_and_resumes(
    gateway: Gateway, urls: dict[Role, str]
) -> None:
    newest = gateway.call(api.newest_event, writes=False)
    got: list[dict[str, str]] = []
    url = f"{urls['admin']}/stream?since={newest}"
    follower = threading.Thread(target=lambda: got.extend(_stream_events(url, {}, 2)))
    follower.start()
    time.sleep(0.3)  # following by now; a write made earlier would be found all the same
    gateway.call(lambda c: api.vm_start(c, "batch"), writes=True)
    follower.join(10)
    changed, feed = got
    assert changed["event"] == "changed" and "vm" in changed["data"].split()
    assert feed["event"] == "feed" and "vm-started" in feed["data"]
    seq = int(feed["id"])
    assert seq == gateway.call(api.newest_event, writes=False)
    # A browser that reconnects says where it was: the stream goes on from there.
    resumed = _stream_events(f"{urls['admin']}/stream", {"Last-Event-ID": str(seq - 1)}, 2)
    assert [e["event"] for e in resumed] == ["changed", "feed"]


# -- the vendored scripts ------------------------------------------------------------------------


def test_the_vendored_scripts_are_the_ones_the_notice_names() -> None:
    notice = (console_module.STATIC / "NOTICE.md").read_text()
    rows = re.findall(
        r"\| `([\w.-]+\.js)` \| `([\w.-]+)` \| ([\d.]+) \|.*\| `([0-9a-f]{64})` \|", notice
    )
    assert {r[0] for r in rows} == {"htmx.min.js", "htmx-ext-sse.min.js"}
    for name, _package, _version, digest in rows:
        assert hashlib.sha256((console_module.STATIC / name).read_bytes()).hexdigest() == digest
        assert name in console_module.STATIC_FILES
