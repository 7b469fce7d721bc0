"""The console as a person uses it: every page, a VM started and a weight set from the
page, a change made by the CLI showing up live, the reader's page, CSRF.

"Without a reload" is checked by a marker set on ``window`` before the change: a
reload would drop it.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import pytest
from tests.browser.conftest import Console, Problems, open_page, screenshots_dir
from tests.browser.server import ServerThread

from iovctl.http.app import create_app
from iovctl.http.gateway import Gateway
from iovctl.services import api
from iovctl.wiring import Options

pytestmark = pytest.mark.browser

PAGES = {
    "/": "Host readiness",
    "/adapters": "Adapters",
    "/switches": "Virtual switches",
    "/vms": "VF pools",
    "/events": "Events",
}


def visit(page: Any, url: str) -> None:
    """Open ``url`` and wait until its event stream is open."""
    page.goto(url)
    page.wait_for_selector('#live-state[data-state="open"]')
    page.evaluate("window.__sameDocument = true")


def still_same_document(page: Any) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(screenshots_dir() / f"{name}.png"), full_page=True)


def pool(page: Any, switch: str) -> str:
    return str(page.get_attribute(f'#live-pools .pool[data-pool="{switch}"]', "data-used"))


def test_every_page_renders_with_its_parts(page: Any, console: Console) -> None:
    for path, heading in PAGES.items():
        visit(page, console.urls["admin"] + path)
        assert page.locator("main h2").first.inner_text() == heading
        assert page.locator("#feed li").count() > 0
        shot(page, "admin" + (path.replace("/", "-") if path != "/" else "-host"))
    visit(page, console.urls["admin"] + "/")
    assert page.get_attribute("[data-iov-support]", "data-iov-support") == "true"
    visit(page, console.urls["admin"] + "/adapters")
    # enp1s0: 2 of 3 enabled VFs held, 7 in all; the Realtek has no pool.
    bar = page.locator('.pool[data-pool="enp1s0"]')
    assert (bar.get_attribute("data-used"), bar.get_attribute("data-enabled")) == ("2", "3")
    assert bar.get_attribute("data-total") == "7"
    assert "no SR-IOV" in page.locator('tr[data-adapter="eno1"]').inner_text()
    visit(page, console.urls["admin"] + "/switches")
    office = page.locator('tr[data-switch="office"]').inner_text()
    assert "hint:" in office  # IOV asked on an adapter that cannot: the reason and its fix


def test_a_host_that_is_not_ready_shows_every_reason_and_hint(
    browser: Any, problems: Problems, tmp_path: Any
) -> None:
    gateway = Gateway(Options(state_dir=tmp_path / "state", sim="no-iommu"))
    host = gateway.call(api.host_show, writes=False)
    assert host.iov_support_reasons
    page = open_page(browser, problems)
    with ServerThread(create_app(gateway, "reader")) as server:
        visit(page, server.url + "/")
        text = page.locator("#live-host").inner_text()
        for reason in host.iov_support_reasons:
            assert reason.code in text and reason.hint in text
        shot(page, "reader-host-not-ready")
        page.context.close()
    assert problems.unexpected() == []


def test_start_a_vm_from_the_page_and_watch_the_pool_and_feed(page: Any, console: Console) -> None:
    visit(page, console.urls["admin"] + "/vms")
    assert pool(page, "external") == "2"
    newest = page.get_attribute("#feed li", "data-seq")
    page.locator('tbody[data-vm="batch"] button.start').click()
    page.wait_for_selector('#flash .done:has-text("VM batch started")')
    page.wait_for_selector('#live-pools .pool[data-pool="external"][data-used="3"]')
    page.wait_for_selector('tbody[data-vm="batch"][data-state="running"]')
    page.wait_for_selector('tr[data-nic="batch/nic0"][data-path="vf"]')
    page.wait_for_function(
        "(newest) => Number(document.querySelector('#feed li').dataset.seq) > newest",
        arg=int(newest or 0),
    )
    assert "batch" in page.locator("#feed").inner_text()
    assert still_same_document(page)
    shot(page, "admin-vms-after-start")


def test_set_a_weight_and_watch_the_paths_change(
    page: Any, console: Console, problems: Problems
) -> None:
    console.gateway.call(lambda c: api.vm_start(c, "batch"), writes=True)  # the pool is full
    visit(page, console.urls["admin"] + "/vms")
    # db at weight 0 would stay on software; 90 lets it take batch's VF when it starts.
    weight = page.locator('tr[data-nic="db/nic0"] input[name="iov_weight"]')
    weight.fill("90")
    page.locator('tr[data-nic="db/nic0"] form.weight button').click()
    page.wait_for_selector('#flash .done:has-text("IOV weight 90")')
    assert console.read(lambda c: api.nic_show(c, "db", "nic0")).iov_weight == 90
    page.locator('tbody[data-vm="db"] button.start').click()
    page.wait_for_selector('tr[data-nic="db/nic0"][data-path="vf"]')
    page.wait_for_selector('tr[data-nic="batch/nic0"][data-path="software"]')
    reason = page.locator('tr[data-nic="batch/nic0"]').inner_text()
    assert "degraded" in reason
    shot(page, "admin-vms-after-preemption")
    # A refused weight is shown as the CLI shows it, and changes nothing.
    problems.expected.append("status of 400")
    weight = page.locator('tr[data-nic="db/nic0"] input[name="iov_weight"]')
    weight.fill("101")
    page.locator('tr[data-nic="db/nic0"] form.weight button').click()
    error = page.wait_for_selector('#flash .error[data-code="invalid-weight"]')
    assert "hint:" in error.inner_text()
    assert console.read(lambda c: api.nic_show(c, "db", "nic0")).iov_weight == 90
    assert still_same_document(page)
    shot(page, "admin-vms-refused-weight")


def test_a_change_made_by_the_cli_shows_up_live(page: Any, console: Console) -> None:
    visit(page, console.urls["admin"] + "/vms")
    cli = [sys.executable, "-m", "iovctl", "--state-dir", str(console.state_dir)]
    subprocess.run([*cli, "vm", "stop", "web1"], check=True, capture_output=True)
    page.wait_for_selector('tbody[data-vm="web1"][data-state="off"]')
    page.wait_for_selector('#live-pools .pool[data-pool="external"][data-used="1"]')
    page.wait_for_selector('#feed li:has-text("web1")')
    assert still_same_document(page)


#: Notes, on the page's clock, when the NIC row first shows a given weight.
WATCH_WEIGHT = """(weight) => {
    window.__shown = undefined;
    const selector = `tr[data-nic="web2/nic0"] input[value="${weight}"]`;
    const observer = new MutationObserver(() => {
        if (document.querySelector(selector)) {
            window.__shown = performance.now();
            observer.disconnect();
        }
    });
    observer.observe(document.body, {subtree: true, childList: true});
}"""


def test_change_to_browser_latency(page: Any, console: Console) -> None:
    """The time from a write committed outside the daemon (another process's view of
    the state directory, like the CLI) to the page showing it, on the page's clock
    (read just after the write returned, so a few ms short at most). Reported, not
    asserted: speed goals live in benchmarks."""
    outside = Gateway(console.gateway.options)  # the server's gateway is not told of it
    visit(page, console.urls["admin"] + "/vms")
    samples = []
    # Writes at random moments: right after the page updated they would always land
    # at the same point of the daemon's 0.2 s look at the event log.
    jitter = random.Random(10)
    for weight in range(11, 26):
        time.sleep(jitter.uniform(0, 0.25))
        page.evaluate(WATCH_WEIGHT, weight)
        outside.call(lambda c, w=weight: api.nic_set(c, "web2", "nic0", iov_weight=w), writes=True)
        committed = page.evaluate("performance.now()")
        page.wait_for_function("() => window.__shown !== undefined")
        samples.append(page.evaluate("window.__shown") - committed)
    samples.sort()
    report = {
        "samples": len(samples),
        "median_ms": round(statistics.median(samples), 1),
        "p90_ms": round(samples[int(0.9 * (len(samples) - 1))], 1),
        "max_ms": round(samples[-1], 1),
    }
    (screenshots_dir() / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"change-to-browser latency: {report}")
    assert still_same_document(page)


def test_the_reader_sees_no_actions_and_cannot_post(
    page: Any, console: Console, problems: Problems
) -> None:
    problems.expected.append("status of 403")
    visit(page, console.urls["reader"] + "/vms")
    assert page.locator("main button, main form, main input").count() == 0
    assert page.locator(".role").text_content() == "reader"
    shot(page, "reader-vms")
    token = json.loads(page.get_attribute("body", "hx-headers"))["X-CSRF-Token"]
    status = page.evaluate(
        """async (token) => (await fetch('/vms/start', {method: 'POST',
            headers: {'X-CSRF-Token': token, 'Content-Type': 'application/x-www-form-urlencoded'},
            body: 'vm=batch'})).status""",
        token,
    )
    assert status == 403
    assert console.read(lambda c: api.vm_show(c, "batch")).state == "off"


def test_a_post_without_the_token_is_refused(
    page: Any, console: Console, problems: Problems
) -> None:
    problems.expected.append("status of 403")
    visit(page, console.urls["admin"] + "/vms")
    status = page.evaluate(
        """async () => (await fetch('/vms/start', {method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'},
            body: 'vm=batch'})).status"""
    )
    assert status == 403
    assert console.read(lambda c: api.vm_show(c, "batch")).state == "off"
