"""``iovctl events --follow`` (issue 9, item 7) as a real process: it prints what other
commands commit, with the filters of ``events``, and SIGINT ends it cleanly (exit 0)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import clean_env, run_in_process


class Follower:
    """``iovctl events --follow`` in a subprocess; its stdout read line by line."""

    def __init__(self, state: Path, *options: str) -> None:
        argv = ["--state-dir", str(state), "events", "--follow", *options]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iovctl", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def line(self, timeout: float = 20.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no event line within the timeout") from None

    def stop(self) -> tuple[int, str, str]:
        """SIGINT, then the exit code, what was printed and not read yet, and stderr."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=20)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        time.sleep(0.1)  # the reader thread drains the pipe
        rest = "".join(self.lines.get() for _ in range(self.lines.qsize()))
        return self.proc.returncode, rest, err


def _iovctl(state: Path, *args: str) -> None:
    result = run_in_process(["--sim", "demo", "--state-dir", str(state), *args])
    assert result.code == 0, result.err


def test_follow_prints_new_events_and_stops_on_sigint(tmp_path):
    state = tmp_path / "state"
    _iovctl(state, "vm", "create", "before")
    proc = Follower(state, "-o", "json")
    try:
        old = json.loads(proc.line())  # what was there already comes first
        assert (old["code"], old["object_name"]) == ("vm-created", "before")
        _iovctl(state, "vm", "create", "after")
        new = json.loads(proc.line())
        assert (new["code"], new["object_name"]) == ("vm-created", "after")
        assert new["seq"] > old["seq"]
    finally:
        code, out, err = proc.stop()
    assert (code, out, err) == (0, "", "")


def test_follow_filters_by_level_and_object_and_shows_dates(tmp_path):
    state = tmp_path / "state"
    _iovctl(state, "vm", "create", "quiet")
    proc = Follower(state, "--object", "loud", "--since", "1")
    try:
        time.sleep(0.5)
        _iovctl(state, "vm", "create", "other")  # filtered out
        _iovctl(state, "vm", "create", "loud")
        _iovctl(state, "switch", "create", "sw", "--uplink", "enp1s0")
        _iovctl(state, "nic", "add", "loud", "--switch", "sw", "--name", "n1")
        first, second = proc.line(), proc.line()
    finally:
        code, rest, err = proc.stop()
    assert (code, err) == (0, "")
    assert "vm-created" in first and "loud" in first
    assert "nic-added" in second and "loud/n1" in second  # a VM's NICs come with it
    assert time.strftime("%Y-%m-%d") in first  # dates in the time column
    assert "other" not in first + second + rest
    # --level warning: only the warning of an IOV switch that cannot work.
    proc = Follower(state, "--level", "warning", "-o", "json")
    try:
        _iovctl(state, "switch", "create", "office", "--uplink", "eno1", "--iov")
        warning = json.loads(proc.line())
    finally:
        code, rest, err = proc.stop()
    assert warning["code"] == "switch-iov-unsupported" and warning["level"] == "warning"
    assert (code, rest, err) == (0, "", "")
