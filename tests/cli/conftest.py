"""Fixtures for the CLI tests: an ``iovctl`` bound to a fresh state directory.

``cli`` runs ``iovctl.cli.main.main`` in-process (capsys), always with its own
``--state-dir`` under tmp_path and a ``--sim`` host spec, never the user's state.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import QUICK_ENV, Result, assert_clean_error, run_in_process, state_dump
from iovctl.cli.main import main


class Cli:
    """One simulated host in one state directory, driven through the real CLI."""

    def __init__(self, capsys: pytest.CaptureFixture[str], state_dir: Path, sim: str) -> None:
        self._capsys = capsys
        self.state_dir = state_dir
        self.sim = sim

    def run(self, *args: str) -> Result:
        """One command. ``--sim`` is given until the state directory exists; later
        commands rely on the host stored there, as a user's would."""
        sim = [] if (self.state_dir / "iovctl.db").exists() else ["--sim", self.sim]
        self._capsys.readouterr()
        code = main([*sim, "--state-dir", str(self.state_dir), *args])
        out, err = self._capsys.readouterr()
        return Result(code, out, err)

    def ok(self, *args: str) -> Any:
        """Run with ``-o json``; it must succeed silently on stderr. Returns the JSON."""
        result = self.run(*args, "-o", "json")
        assert result.code == 0, result.err
        assert result.err == "", result.err
        assert "Traceback" not in result.out
        return result.json()

    def fail(self, *args: str, code: str, exit_code: int) -> Result:
        result = self.run(*args)
        assert_clean_error(result, code, exit_code)
        return result

    # -- shortcuts for the objects tests look at --------------------------------

    def nic(self, vm: str, name: str = "nic0") -> dict[str, Any]:
        return self.ok("nic", "show", vm, name)

    def vfs(self, adapter: str = "enp1s0") -> list[dict[str, Any]]:
        return self.ok("vf", "list", adapter)

    def vf(self, index: int, adapter: str = "enp1s0") -> dict[str, Any]:
        (vf,) = [v for v in self.vfs(adapter) if v["function_id"] == index]
        return vf

    def switch(self, name: str) -> dict[str, Any]:
        return self.ok("switch", "show", name)

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        return self.ok("events", "--since", str(since))

    def last_seq(self) -> int:
        events = self.ok("events", "--limit", "1")
        return events[-1]["seq"] if events else 0

    def holders(self, adapter: str = "enp1s0") -> dict[int, str]:
        """VF index -> ``vm/nic`` holding it."""
        return {
            v["function_id"]: f"{v['vm_friendly_name']}/{v['vm_nic']}"
            for v in self.vfs(adapter)
            if v["in_use"]
        }

    def vm_with_nic(self, vm: str, *nic_args: str, switch: str = "ext", start: bool = False) -> Any:
        self.ok("vm", "create", vm)
        nic = self.ok("nic", "add", vm, "--switch", switch, *nic_args)
        if start:
            self.ok("vm", "start", vm)
            return self.nic(vm, nic["name"])
        return nic

    def igb_pool(self, num_vfs: int = 3) -> None:
        """The demo host's 82576 with ``num_vfs`` VFs behind the IOV switch ``ext``."""
        self.ok("adapter", "enable", "enp1s0", "--num-vfs", str(num_vfs))
        self.ok("switch", "create", "ext", "--uplink", "enp1s0", "--iov")


@pytest.fixture(scope="session", autouse=True)
def _quick_argparse() -> Iterator[None]:
    """Pin the locale and terminal size: deterministic output, and argparse stops
    probing for translations and the terminal on each of its ~100 add_argument calls
    (half of an in-process command's time)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in QUICK_ENV.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(autouse=True)
def _no_user_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may read IOVCTL_* from the caller or fall back to the real default dir."""
    monkeypatch.delenv("IOVCTL_SIM", raising=False)
    monkeypatch.setenv("IOVCTL_STATE_DIR", str(tmp_path / "env-state-dir-must-stay-unused"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-must-stay-unused"))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    return Cli(capsys, tmp_path / "state", "demo")


@pytest.fixture
def make_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Any:
    """``make_cli(sim)``: another host in its own state directory."""

    def make(sim: str, name: str | None = None) -> Cli:
        return Cli(capsys, tmp_path / (name or f"state-{sim.replace('/', '_')}"), sim)

    return make


# -- a populated host, built once and copied per test -------------------------------

#: The populated host the error tests start from: enp1s0 with 3 VFs behind the IOV
#: switch "ext", a non-IOV switch "plain" on eno1, vm1 running (its nic0 holds VF 0),
#: vm2 off with one NIC.
POPULATED = (
    ("adapter", "enable", "enp1s0", "--num-vfs", "3"),
    ("switch", "create", "ext", "--uplink", "enp1s0", "--iov"),
    ("switch", "create", "plain", "--uplink", "eno1"),
    ("vm", "create", "vm1"),
    ("nic", "add", "vm1", "--switch", "ext", "--name", "nic0", "--mac", "52:54:00:aa:00:01"),
    ("nic", "set", "vm1", "nic0", "--iov-weight", "50", "--vlan", "10"),
    ("vm", "create", "vm2"),
    ("nic", "add", "vm2", "--switch", "ext", "--mac", "52:54:00:aa:00:02", "--iov-weight", "50"),
    ("vm", "start", "vm1"),
)


@pytest.fixture(scope="session")
def populated_template(
    tmp_path_factory: pytest.TempPathFactory, _quick_argparse: None
) -> tuple[Path, dict[str, str]]:
    state_dir = tmp_path_factory.mktemp("populated") / "state"
    for command in POPULATED:
        result = run_in_process(["--sim", "demo", "--state-dir", str(state_dir), *command])
        assert result.code == 0, (command, result.err)
    return state_dir, state_dump(state_dir)


@pytest.fixture
def populated(
    populated_template: tuple[Path, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> Iterator[Cli]:
    """A private copy of the populated host; ``cli.before`` is its state dump."""
    template, _ = populated_template
    state_dir = tmp_path / "state"
    shutil.copytree(template, state_dir)
    yield Cli(capsys, state_dir, "demo")


@pytest.fixture
def populated_before(populated_template: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return populated_template[1]
