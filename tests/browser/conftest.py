"""The console in a real browser: Debian's Chromium driven by Playwright.

Playwright's own browser download cannot work here, so the tests launch the
Chromium that Debian packages (``chromium-headless-shell``, or ``chromium``) through
``executable_path``; without one (or without playwright) they skip and say why,
except in CI (``CI=true``), which installs it: there a missing browser fails.
The console is served by uvicorn in a thread, on a loopback port, over a simulated
host's state directory: the same app the daemon serves on its sockets.

Screenshots go to ``IOVCTL_SCREENSHOTS`` or ``tests/browser/screenshots/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.browser.server import demo_host, serve

from iovctl.http.gateway import Gateway

#: Where Debian puts its Chromium builds, best first.
CHROMIUMS = (
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/bin/chromium-headless-shell",
    "/usr/lib/chromium/chromium",
    "/usr/bin/chromium",
)
CHROMIUM_ARGS = [
    "--no-sandbox",  # root, as CI runs
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}


def find_chromium() -> str | None:
    chosen = os.environ.get("IOVCTL_CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    return next((c for c in CHROMIUMS if os.access(c, os.X_OK)), None)


def screenshots_dir() -> Path:
    chosen = os.environ.get("IOVCTL_SCREENSHOTS")
    folder = Path(chosen) if chosen else Path(__file__).parent / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- the console under test ---------------------------------------------------------------


@dataclass
class Console:
    """The console under test: its state directory and its two faces."""

    state_dir: Path
    gateway: Gateway
    urls: dict[str, str] = field(default_factory=dict)

    def read(self, call: Any) -> Any:
        return self.gateway.call(call, writes=False)


@pytest.fixture
def console(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """A fresh copy of the demo host per test: tests do not depend on each other."""
    gateway = demo_host(tmp_path_factory.getbasetemp(), tmp_path / "state")
    with serve(gateway) as urls:
        yield Console(tmp_path / "state", gateway, dict(urls))


# -- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for this module's tests; closed after them (Playwright's event loop
    must not outlive them into tests that run their own)."""
    executable = find_chromium()
    if executable is None:
        missing = "no Chromium: apt-get install chromium-headless-shell (or set IOVCTL_CHROMIUM)"
        if os.environ.get("CI") == "true":  # .ci/run installs it: a skip would hide that
            pytest.fail(missing)
        pytest.skip(missing)
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Problems:
    """What the page said went wrong: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)
    #: Console messages a test provokes on purpose (a refused change's HTTP status).
    expected: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(x in e for x in self.expected)]


@pytest.fixture
def problems() -> Problems:
    return Problems()


def open_page(browser: Any, problems: Problems) -> Any:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on(
        "console",
        lambda m: problems.errors.append(f"console: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.errors.append(f"pageerror: {e}"))
    return page


@pytest.fixture
def page(browser: Any, problems: Problems, console: Console) -> Iterator[Any]:
    """A fresh browser context (its own cookies) at 1280x800; no console error may
    happen in it. Closed before the console's servers stop (an open event stream
    would hold their shutdown)."""
    page = open_page(browser, problems)
    yield page
    page.context.close()
    assert problems.unexpected() == []
