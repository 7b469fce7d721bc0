"""``iovctl --connect``: every command through the daemon prints, fails and exits as
it does on the state directory itself."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.conftest import Daemon
from helpers import assert_clean_error, clean_env, run_in_process

#: One session of commands, failures included, run twice: directly and through the
#: daemon. Every command that has a service is here (checked below).
SESSION: tuple[tuple[str, ...], ...] = (
    ("host",),
    ("host", "-o", "json"),
    ("host", "snapshot", "--name", "copy"),
    ("host", "snapshot", "-o", "json"),
    ("adapter", "list"),
    ("adapter", "show", "enp1s0"),
    ("adapter", "show", "nope"),
    ("adapter", "enable", "enp1s0", "--num-vfs", "4"),
    ("adapter", "set", "enp1s0", "--num-vfs", "7", "-o", "json"),
    ("adapter", "set", "enp1s0", "--num-vfs", "99"),
    ("vf", "list"),
    ("vf", "list", "enp1s0", "-o", "json"),
    ("switch", "create", "sw0", "--uplink", "enp1s0", "--iov"),
    ("switch", "create", "sw0", "--uplink", "enp1s0"),
    ("switch", "create", "bad name", "--uplink", "enp1s0"),
    ("switch", "create", "sw1", "--uplink", "nope"),
    ("switch", "list"),
    ("switch", "show", "sw0", "-o", "json"),
    ("switch", "set", "sw0", "--no-iov"),
    ("vm", "create", "vm1"),
    ("vm", "create", "vm2", "-o", "json"),
    ("vm", "create", ".."),
    ("vm", "import", "nosuch"),
    ("vm", "create", "vm3", "--disk", "/no/such.img"),
    ("nic", "add", "vm1", "--switch", "sw0", "--iov-weight", "80", "--vlan", "10"),
    ("nic", "add", "vm2", "--switch", "sw0", "--iov-weight", "20", "--name", "eth0"),
    ("nic", "add", "vm2", "--switch", "sw0", "--vlan", "5000"),
    ("nic", "add", "vm2", "--switch", "sw0", "--mac", "zz"),
    ("nic", "add", "ghost", "--switch", "sw0"),
    ("nic", "set", "vm1", "nic0", "--untagged", "--trust", "--max-rate", "100"),
    ("nic", "set", "vm1", "nic0", "--vlan", "3", "--untagged"),
    ("nic", "set", "vm1", "nic0", "--pvlan", "isolated", "--primary-vlan", "10"),
    ("nic", "list"),
    ("nic", "list", "vm2", "-o", "json"),
    ("nic", "show", "vm1", "nic0"),
    ("nic", "show", "vm1", "nic7"),
    ("vm", "start", "vm1"),
    ("vm", "start", "vm2", "-o", "json"),
    ("vm", "start", "vm1"),
    ("vm", "list"),
    ("vm", "show", "vm1", "-o", "json"),
    ("vm", "show", ""),
    ("vm", "show", ".."),
    ("nic", "show", "vm1", "."),
    ("vm", "delete", "vm1"),
    ("adapter", "disable", "enp1s0"),
    ("vm", "stop", "vm1"),
    ("nic", "remove", "vm1", "nic0"),
    ("nic", "remove", "vm1", "nic0"),
    ("vm", "delete", "vm1"),
    ("switch", "delete", "sw0"),
    ("adapter", "disable", "enp1s0", "--force", "-o", "json"),
    ("apply", "--dry-run"),
    ("apply",),
    ("host", "power-cycle", "-o", "json"),
    ("events", "--limit", "5", "--kind", "vm"),
    ("events", "--level", "warning", "-o", "json"),
    ("events", "--since", "x"),
    ("events", "--object", "vm2"),
)

_TIMES = (
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?"), "<time>"),
    (re.compile(r'"(time|created_at|started_at)": [0-9.]+'), r'"\1": 0'),
)


def _plain(text: str) -> str:
    for pattern, replacement in _TIMES:
        text = pattern.sub(replacement, text)
    return text


def test_the_session_covers_every_command_with_a_service() -> None:
    from iovctl.cli.commands import COMMANDS

    covered = {tuple(w for w in argv if not w.startswith("-"))[:2] for argv in SESSION}
    for command in COMMANDS:
        if command.call is not None:
            assert any(c[: len(command.words)] == command.words for c in covered), command.name


def test_every_command_prints_and_exits_as_it_does_directly(
    daemon: Daemon, tmp_path: Path
) -> None:
    base = ["--sim", "demo", "--state-dir", str(tmp_path / "direct")]
    for argv in SESSION:
        direct = run_in_process([*base, *argv])
        remote = daemon.cli(*argv)
        assert "Traceback" not in remote.err, (argv, remote.err)
        assert (remote.code, _plain(remote.out), _plain(remote.err)) == (
            direct.code,
            _plain(direct.out),
            _plain(direct.err),
        ), argv


def test_local_only_commands_and_a_local_state_are_refused(daemon: Daemon) -> None:
    assert_clean_error(daemon.cli("cleanup"), "not-over-connect", 1)
    assert_clean_error(daemon.cli("token", "list"), "not-over-connect", 1)
    got = run_in_process(["--connect", daemon.url, "--state-dir", "x", "vm", "list"])
    assert_clean_error(got, "conflicting-options", 2)


def test_the_environment_names_the_daemon_and_a_flag_wins(daemon: Daemon, monkeypatch) -> None:
    monkeypatch.setenv("IOVCTL_CONNECT", daemon.url)
    assert run_in_process(["vm", "create", "envvm"]).code == 0
    assert "envvm" in daemon.cli("vm", "list").out
    monkeypatch.setenv("IOVCTL_CONNECT", "unix:///nonexistent/iovctl.sock")
    assert_clean_error(run_in_process(["vm", "list"]), "daemon-unreachable", 6)
    assert_clean_error(
        run_in_process(["--connect", "tcp://x:1", "vm", "list"]), "invalid-connect", 2
    )


def test_read_only_socket_through_the_cli(daemon: Daemon) -> None:
    url = f"unix://{daemon.read_socket}"
    assert run_in_process(["--connect", url, "vm", "list"]).code == 0
    assert_clean_error(run_in_process(["--connect", url, "vm", "create", "x"]), "read-only", 1)
    assert "x" not in daemon.cli("vm", "list", "-o", "json").out


def test_events_follow_through_the_daemon(daemon: Daemon) -> None:
    daemon.cli("vm", "create", "before")
    proc = subprocess.Popen(
        [sys.executable, "-m", "iovctl", "--connect", daemon.url, "events", "-f", "-o", "json",
         "--kind", "vm"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert '"object_name": "before"' in first
        daemon.cli("vm", "create", "after")
        second = proc.stdout.readline()
        assert '"object_name": "after"' in second and '"vm-created"' in second
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_a_daemon_that_goes_away_is_an_error_not_a_traceback(daemon: Daemon, sig: int) -> None:
    daemon.stop(sig)
    deadline = time.monotonic() + 10
    while daemon.socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert_clean_error(daemon.cli("vm", "list"), "daemon-unreachable", 6)
