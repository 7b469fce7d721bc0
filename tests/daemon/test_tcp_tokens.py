"""TCP is off unless asked, TLS only, and each request's bearer token decides what it
may do; tokens are stored hashed and shown once."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from daemon.conftest import Daemon, start_daemon
from helpers import assert_clean_error, run_in_process
from iovctl.http.tokens import FILE_NAME, TokenStore


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the TLS test (.ci/run installs it)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tokens_are_stored_hashed_and_shown_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    added = run_in_process(["--sim", "demo", "--state-dir", str(state), "token", "add", "ci",
                            "--role", "reader"])
    assert added.code == 0, added.err
    token = added.out.strip()
    assert token.startswith("iovctl_") and len(token) > 40
    text = (state / FILE_NAME).read_text()
    assert token not in text and token[7:] not in text
    assert stat.S_IMODE((state / FILE_NAME).stat().st_mode) == 0o600
    store = TokenStore(state)
    assert store.verify(token) == "reader"
    assert store.verify(token + "x") is None and store.verify("") is None
    listed = run_in_process(["--state-dir", str(state), "token", "list", "-o", "json"])
    assert [(t["name"], t["role"]) for t in json.loads(listed.out)] == [("ci", "reader")]
    again = run_in_process(["--state-dir", str(state), "token", "add", "ci", "--role", "admin"])
    assert_clean_error(again, "token-exists", 4)
    bad = run_in_process(["--state-dir", str(state), "token", "add", "a b", "--role", "admin"])
    assert_clean_error(bad, "invalid-name", 2)
    assert run_in_process(["--state-dir", str(state), "token", "remove", "ci"]).code == 0
    assert store.verify(token) is None
    gone = run_in_process(["--state-dir", str(state), "token", "remove", "ci"])
    assert_clean_error(gone, "token-not-found", 3)


def test_listen_needs_tls(short_dir: Path) -> None:
    with pytest.raises(AssertionError, match=r"error\[tls-required\]"):
        start_daemon(short_dir, args=("--listen", "127.0.0.1:1"))


def test_tcp_serves_tls_and_each_token_its_role(
    short_dir: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = short_dir / "state"
    reader = TokenStore(state).add("r", "reader")
    admin = TokenStore(state).add("a", "admin")
    port = _free_port()
    cert, key = certificate
    d: Daemon = start_daemon(
        short_dir,
        args=("--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert), "--tls-key", str(key)),
    )
    try:
        _wait_for_port(port)
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=cert)) as c:
            assert c.get("/api/v1/vms").status_code == 401
            assert c.get("/api/v1/vms").json()["error"]["code"] == "unauthorized"
            bad = {"Authorization": "Bearer iovctl_nope"}
            assert c.get("/api/v1/vms", headers=bad).status_code == 401
            as_reader = {"Authorization": f"Bearer {reader}"}
            assert c.get("/api/v1/vms", headers=as_reader).status_code == 200
            refused = c.post("/api/v1/vms", json={"name": "x"}, headers=as_reader)
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "read-only")
            as_admin = {"Authorization": f"Bearer {admin}"}
            assert c.post("/api/v1/vms", json={"name": "x"}, headers=as_admin).status_code == 201
        with pytest.raises(httpx.TransportError):  # TLS only: clear text is not answered
            httpx.get(f"http://127.0.0.1:{port}/api/v1/vms", headers=as_admin)
        monkeypatch.setenv("IOVCTL_TOKEN", reader)
        monkeypatch.setenv("IOVCTL_CACERT", str(cert))
        got = run_in_process(["--connect", base, "vm", "list", "-o", "json"])
        assert got.code == 0 and json.loads(got.out)[0]["name"] == "x"
        assert_clean_error(run_in_process(["--connect", base, "vm", "delete", "x"]), "read-only", 1)
    finally:
        d.stop()


def _wait_for_port(port: int) -> None:
    """The TCP socket is bound just after the unix ones."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_daemon_unit_is_installed_like_the_apply_unit(tmp_path: Path) -> None:
    units = tmp_path / "units"
    argv = ["--sim", "demo", "--state-dir", str(tmp_path / "state"), "install-service", "--daemon",
            "--no-enable", "--unit-dir", str(units), "-o", "json"]
    got = run_in_process(argv)
    assert got.code == 0, got.err
    assert json.loads(got.out)["unit"] == str(units / "iovctld.service")
    text = (units / "iovctld.service").read_text()
    assert f"Environment=IOVCTL_STATE_DIR={tmp_path / 'state'}" in text
    assert " daemon\n" in text.split("ExecStart=")[1][:200]
    assert "RuntimeDirectory=iovctl" in text and "@" not in text.replace("@.", "")
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(units / "iovctld.service")],
            capture_output=True, text=True, check=False,
        )
        assert "iovctld.service" not in verify.stderr, verify.stderr
