"""A real Prometheus server (Debian's ``prometheus``) scrapes the app served by uvicorn
on 127.0.0.1; what its HTTP API answers equals the services' views.

Prometheus runs from its binary with a temporary config and TSDB, on an ephemeral
port, for this test only (never the distribution's service).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from iovctl.http.app import create_app
from iovctl.http.gateway import Gateway

from .test_metrics import check_against_views, gateway  # noqa: F401  (a fixture)

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).is_file(),
    reason="needs Debian's prometheus server (apt-get install prometheus; .ci/run does)",
)
#: Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {"job", "instance"}


@contextlib.contextmanager
def served(g: Gateway) -> Iterator[int]:
    """The app on 127.0.0.1 (an ephemeral port) by uvicorn, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(g), log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def prometheus(tmp_path: Path, target_port: int) -> Iterator[str]:
    """A Prometheus server scraping 127.0.0.1:``target_port`` every second; yields its URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: iovctl\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def query_all(url: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Every iovctl series Prometheus holds now, without the target's labels."""
    got = httpx.get(f"{url}/api/v1/query", params={"query": '{__name__=~"iovctl_.+"}'})
    got.raise_for_status()
    body = got.json()
    assert body["status"] == "success", body
    out: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for series in body["data"]["result"]:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        for extra in TARGET_LABELS:
            labels.pop(extra, None)
        out.setdefault(name, {})[frozenset(labels.items())] = float(series["value"][1])
    return out


def test_prometheus_scrapes_what_the_api_says(
    gateway: Gateway,  # noqa: F811
    tmp_path: Path,
) -> None:
    with served(gateway) as port, prometheus(tmp_path, port) as url:
        deadline = time.monotonic() + 60
        while True:
            try:
                got = query_all(url)
                # A scrape is in once the VF counters (the last families) are there.
                if got.get("iovctl_vf_transmit_dropped_total"):
                    break
            except httpx.HTTPError:
                pass  # not listening yet
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)
        up = httpx.get(f"{url}/api/v1/query", params={"query": 'up{job="iovctl"}'}).json()
        assert [r["value"][1] for r in up["data"]["result"]] == ["1"]
        check_against_views(got, gateway)
        assert got["iovctl_vf_receive_bytes_total"][
            frozenset(
                {
                    "device": "enp1s0",
                    "vf": "0",
                    "pci_address": "0000:01:10.0",
                    "numa_node": "0",
                    "switch": "sw0",
                    "vm": "web",
                    "nic": "eth0",
                }.items()
            )
        ] == 1500
