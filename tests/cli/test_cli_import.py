"""``vm import`` and ``vm create``'s template options through the CLI (issue 12,
item 1): what works, and every refusal as a clean error with a hint that changes
nothing at all (the state dump, database included, is as it was)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import state_dump
from iovctl.adapters.sim import runtime as sim
from iovctl.adapters.sim.machine import open_machine

INVALID, NOT_FOUND, CONFLICT = 2, 3, 4


@pytest.fixture
def machine(cli):  # type: ignore[no-untyped-def]
    cli.igb_pool(2)
    conn = open_machine(cli.state_dir)
    yield conn
    conn.close()


def test_import_a_running_domain_and_follow_it(cli, machine) -> None:  # type: ignore[no-untyped-def]
    sim.define_domain(machine, "web")
    sim.start_domain(machine, "web")
    shown = cli.ok("vm", "import", "web")
    assert (shown["name"], shown["state"]) == ("web", "running")
    nic = cli.ok("nic", "add", "web", "--switch", "ext", "--iov-weight", "50")
    assert cli.nic("web", nic["name"])["virtual_function"]["index"] == 0
    assert [e["code"] for e in cli.events()][-4:-2] == ["vm-imported", "vm-started"]
    sim.stop_domain(machine, "web", "crashed")
    report = cli.ok("apply")
    assert report["changes"] == [{"action": "follow-hypervisor", "vm": "web", "running": False}]
    assert cli.nic("web", nic["name"])["virtual_function"] is None
    text = cli.run("apply", "--dry-run").out
    assert "nothing drifted" in text
    cli.ok("vm", "delete", "web")
    assert cli.ok("vm", "list") == []


@pytest.mark.parametrize(
    ("domain", "code", "exit_code"),
    [
        ({"name": "nosuch"}, "unknown-domain", NOT_FOUND),
        ({"name": "old", "machine": "pc-i440fx-7.2"}, "not-q35", CONFLICT),
        ({"name": "full", "hotplug_slots": 0}, "no-hotplug-slot", CONFLICT),
    ],
)
def test_a_refused_import_changes_nothing(cli, machine, domain, code, exit_code) -> None:  # type: ignore[no-untyped-def]
    name = domain.pop("name")
    if name != "nosuch":
        sim.define_domain(machine, name, **domain)
    before = state_dump(cli.state_dir)
    cli.fail("vm", "import", name, code=code, exit_code=exit_code)
    assert state_dump(cli.state_dir) == before


def test_create_refuses_a_name_the_hypervisor_has(cli, machine) -> None:  # type: ignore[no-untyped-def]
    sim.define_domain(machine, "web")
    before = state_dump(cli.state_dir)
    result = cli.fail("vm", "create", "web", code="domain-exists", exit_code=CONFLICT)
    assert "iovctl vm import web" in result.err
    assert state_dump(cli.state_dir) == before


def test_create_takes_a_template_with_files_that_exist(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(b"\0" * 16)
    initrd.write_bytes(b"\0" * 16)
    shown = cli.ok(
        "vm", "create", "k", "--memory", "256", "--vcpus", "2",
        "--kernel", str(kernel), "--initrd", str(initrd), "--cmdline", "console=ttyS0",
    )  # fmt: skip
    assert (shown["name"], shown["state"]) == ("k", "off")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--disk", "{tmp}/missing.qcow2"), "input-file-invalid"),
        (("--disk", "{tmp}"), "input-file-invalid"),
        (("--disk", "{tmp}/locked.img"), "input-file-invalid"),
        (("--kernel", ""), "input-file-invalid"),
        (("--disk", "{tmp}/ok.img", "--kernel", "{tmp}/ok.img"), "conflicting-options"),
        (("--initrd", "{tmp}/ok.img"), "template-needs-kernel"),
        (("--cmdline", "quiet"), "template-needs-kernel"),
        (("--memory", "512"), "template-no-boot"),
        (("--memory", "1", "--disk", "{tmp}/ok.img"), "template-out-of-range"),
        (("--vcpus", "0", "--disk", "{tmp}/ok.img"), "template-out-of-range"),
        (("--vcpus", "two", "--disk", "{tmp}/ok.img"), "invalid-number"),
    ],
)
def test_a_bad_template_is_refused_before_anything_changes(cli, tmp_path: Path, args, code) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "ok.img").write_bytes(b"")
    locked = tmp_path / "locked.img"
    locked.write_bytes(b"")
    locked.chmod(0)
    cli.ok("vm", "list")
    before = state_dump(cli.state_dir)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if code == "input-file-invalid" and "locked" in argv[-1] and os.geteuid() == 0:
        pytest.skip("root reads any file")
    cli.fail("vm", "create", "v", *argv, code=code, exit_code=INVALID)
    assert state_dump(cli.state_dir) == before


def test_vf_list_shows_a_vf_the_hypervisor_holds(cli, machine) -> None:  # type: ignore[no-untyped-def]
    vf = cli.vf(1)
    sim.hold_pool_vf(machine, vf["pci_address"], "network pool hostnet")
    held = cli.vf(1)
    assert (held["in_use"], held["held_elsewhere"]) == (True, True)
    assert "held by the hypervisor" in cli.run("vf", "list").out
    cli.vm_with_nic("a", "--iov-weight", "50", start=True)
    cli.vm_with_nic("b", "--iov-weight", "60", start=True)
    assert [(v["vm_friendly_name"], v["held_elsewhere"]) for v in cli.vfs()] == [
        ("b", False),
        (None, True),  # the pool's VF is nobody's in iovctl
    ]
    assert cli.nic("a")["status_reason"] == "vfs-exhausted"


def test_host_shows_the_vm_runtime(cli) -> None:  # type: ignore[no-untyped-def]
    assert "VM runtime: simulated, libvirt 9.0.0, QEMU 7.2.0, q35" in cli.run("host").out
