"""A command killed mid-operation: the next command finishes it.

A process runs ``vm start``, ``vm stop`` or ``adapter set`` through the services as
the CLI does (one journaled operation), and is SIGKILLed at a chosen side effect:
the store already says what the command wanted, the journal holds the steps not
yet confirmed. The next ``iovctl`` write command (or ``apply``) must finish them,
and end with exactly what the store says, nothing of the killed command left over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns_lab import probe

from iovctl.adapters.netns import names
from iovctl.adapters.netns.cleanup import cleanup
from iovctl.adapters.netns.kernel import Links, list_netns, netns_exists, wait_until
from iovctl.services.views import bridge_name

pytestmark = pytest.mark.privileged

#: Runs one service call like the CLI, and hangs (marker written) at a hook point.
_KILLED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from iovctl.services import adapters, journal, vms
    from iovctl.wiring import open_context, resolve_options

    state, marker, action, arg, hook = sys.argv[1:6]
    ctx = open_context(resolve_options(state, None, None))
    target = {"runtime": ctx.runtime, "hardware": ctx.hardware}[hook.split(".")[0]]
    method = hook.split(".")[1]
    real = getattr(target, method)
    calls = []

    def hang(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(args)
        if len(calls) == int(hook.split(".")[2]):
            Path(marker).write_text("hanging")
            time.sleep(120)
        return result

    setattr(target, method, hang)
    if action == "vm-start":
        journal.run(ctx, vms.start_vm, arg)
    elif action == "vm-stop":
        journal.run(ctx, vms.stop_vm, arg)
    else:
        journal.run(ctx, adapters.set_num_vfs, arg.split("=")[0], int(arg.split("=")[1]))
    """
)


@dataclass
class Host:
    """An emulated host in its own state directory, driven by the iovctl CLI."""

    tag: str
    state: Path
    spec: Path

    @property
    def adapter(self) -> str:
        return f"ie{self.tag}"

    @property
    def switch(self) -> str:
        return f"sw{self.tag}"

    @property
    def world(self) -> str:
        return f"iov-w{self.tag}"

    def vm(self, suffix: str) -> str:
        return f"{self.tag}{suffix}"

    def iovctl(self, *args: str) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "iovctl", "--state-dir", str(self.state), "-o", "json", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"iovctl {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else None

    def kill_midway(self, tmp: Path, action: str, arg: str, hook: str) -> None:
        """Run ``action`` in a process, SIGKILL it where ``hook`` fires (method.call#)."""
        marker = tmp / f"marker-{uuid.uuid4().hex[:4]}"
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILLED, str(self.state), str(marker), action, arg, hook]
        )
        try:
            assert wait_until(marker.exists, timeout=30), "the killed command never got there"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def where(self, netdev: str) -> str | None:
        """Namespace holding ``netdev`` ("" = the host), None when it exists nowhere."""
        links = Links()
        try:
            if links.index(netdev) is not None:
                return ""
            for ns in list_netns(f"iov-vm-{self.tag}"):
                if netns_exists(ns) and links.index(netdev, ns) is not None:
                    return ns
        finally:
            links.close()
        return None


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    tag = uuid.uuid4().hex[:6]
    spec = tmp_path / "emulation.yaml"
    spec.write_text(
        f"name: killed-{tag}\n"
        f"world: {{netns: iov-w{tag}}}\n"
        f"adapters:\n  - {{name: ie{tag}, total_vfs: 2}}\n"
    )
    h = Host(tag, tmp_path / "state", spec)
    first = [sys.executable, "-m", "iovctl", "--emulate", str(spec), "--state-dir", str(h.state)]
    subprocess.run(
        [*first, "switch", "create", h.switch, "--uplink", h.adapter, "--iov"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    try:
        yield h
    finally:
        vms = [f"{tag}{s}" for s in ("k", "j")]
        cleanup(
            netns_prefix=(f"iov-vm-{tag}", f"iov-nic-ie{tag}", f"iov-w{tag}"),
            link_prefix=(
                f"ie{tag}",
                bridge_name(h.switch),
                *(names.synthetic_host_ifname(vm, "nic0") for vm in vms),
            ),
        )


def _vm_with_nic(host: Host, suffix: str, weight: int) -> str:
    vm = host.vm(suffix)
    host.iovctl("vm", "create", vm)
    host.iovctl("nic", "add", vm, "--switch", host.switch, "--iov-weight", str(weight))
    return vm


def _kill_start_after_the_vf_moved(host: Host, tmp_path: Path) -> str:
    """VM k's start killed once its VF is inside it, before that step was confirmed."""
    host.iovctl("adapter", "enable", host.adapter, "--num-vfs", "1")
    k = _vm_with_nic(host, "k", 100)
    host.kill_midway(tmp_path, "vm-start", k, "runtime.attach_vf.1")
    assert host.iovctl("vm", "show", k)["state"] == "running"  # the intent is recorded
    assert netns_exists(names.vm_netns(k))
    assert host.where(names.vf_netdev(host.adapter, 0)) == names.vm_netns(k)
    return k


def test_the_next_command_finishes_the_killed_start(host: Host, tmp_path: Path) -> None:
    k = _kill_start_after_the_vf_moved(host, tmp_path)

    host.iovctl("vm", "create", host.vm("j"))  # any write command finishes it first
    nic = host.iovctl("nic", "show", k, "nic0")
    assert nic["vf_data_path_active"] is True
    assert host.where(names.vf_netdev(host.adapter, 0)) == names.vm_netns(k)
    assert probe(names.vm_netns(k), "ping", "10.77.0.1", "3")["received"] == 3

    host.iovctl("vm", "stop", k)
    assert not netns_exists(names.vm_netns(k))
    assert host.where(names.vf_netdev(host.adapter, 0)) == ""  # home, not lost


def test_a_killed_stop_is_finished_and_its_vf_goes_to_the_next_vm(
    host: Host, tmp_path: Path
) -> None:
    host.iovctl("adapter", "enable", host.adapter, "--num-vfs", "1")
    k = _vm_with_nic(host, "k", 100)
    host.iovctl("vm", "start", k)
    # Killed once the VF is back in the host, before the namespace went and the
    # VF was scrubbed.
    host.kill_midway(tmp_path, "vm-stop", k, "runtime.detach_vf.1")
    assert host.iovctl("vm", "show", k)["state"] == "off"
    assert netns_exists(names.vm_netns(k))

    j = _vm_with_nic(host, "j", 50)  # finishes the stop: namespace gone, VF scrubbed
    assert not netns_exists(names.vm_netns(k))
    vf = host.iovctl("vf", "list", host.adapter)[0]
    assert (vf["in_use"], vf["mac"]) == (False, "00:00:00:00:00:00")
    host.iovctl("vm", "start", j)
    assert host.iovctl("nic", "show", j, "nic0")["vf_data_path_active"] is True
    assert host.where(names.vf_netdev(host.adapter, 0)) == names.vm_netns(j)
    assert probe(names.vm_netns(j), "ping", "10.77.0.1", "3")["received"] == 3


def test_killed_vf_count_change_is_finished_by_the_next_command(host: Host, tmp_path: Path) -> None:
    # Killed after creating the first of two VFs: devices exist, the count was not
    # recorded yet (it is written last).
    host.kill_midway(tmp_path, "num-vfs", f"{host.adapter}=2", "hardware._create_vf.1")
    nic_ns = names.nic_netns(host.adapter)
    links = Links()
    try:
        assert "vf0" in links.names(nic_ns)
    finally:
        links.close()

    adapter = host.iovctl("adapter", "show", host.adapter)  # any command opens the host
    assert adapter["num_vfs"] == 0  # the emulated NIC drops a half-made VF set
    links = Links()
    try:
        left = [n for n in links.names(nic_ns) if n.startswith("vf")]
        assert left == [], left
        assert links.index(names.vf_netdev(host.adapter, 0)) is None
    finally:
        links.close()

    k = _vm_with_nic(host, "k", 100)  # a write: the journal's count is written first
    assert [vf["function_id"] for vf in host.iovctl("vf", "list", host.adapter)] == [0, 1]
    host.iovctl("vm", "start", k)
    assert host.iovctl("nic", "show", k, "nic0")["vf_data_path_active"] is True
    assert probe(names.vm_netns(k), "ping", "10.77.0.1", "3")["received"] == 3


def test_apply_finishes_a_stop_killed_midway(host: Host, tmp_path: Path) -> None:
    """A stop killed while the runtime let go of its VF: ``apply`` finishes it from
    the journal (the namespace goes, the VF returns to the host)."""
    host.iovctl("adapter", "enable", host.adapter, "--num-vfs", "1")
    k = _vm_with_nic(host, "k", 100)
    host.iovctl("vm", "start", k)
    host.kill_midway(tmp_path, "vm-stop", k, "runtime.detach_vf.1")
    host.iovctl("apply")
    assert host.iovctl("apply")["changed"] == 0  # idempotent
    assert not netns_exists(names.vm_netns(k))
    assert host.where(names.vf_netdev(host.adapter, 0)) == ""


def test_apply_stops_a_vm_started_behind_its_back(host: Host) -> None:
    """A VM the store has off whose namespace exists (made by hand, or left by an
    older iovctl): ``apply`` stops it as a journaled step and says so."""
    k = _vm_with_nic(host, "b", 0)
    subprocess.run(["ip", "netns", "add", names.vm_netns(k)], check=True)
    assert host.iovctl("apply", "--dry-run")["changes"] == [
        {"action": "remove-leftover-vm", "vm": k}
    ]
    assert netns_exists(names.vm_netns(k))  # a dry run changes nothing
    assert host.iovctl("apply")["changes"] == [{"action": "remove-leftover-vm", "vm": k}]
    assert not netns_exists(names.vm_netns(k))
    assert host.iovctl("apply")["changed"] == 0
