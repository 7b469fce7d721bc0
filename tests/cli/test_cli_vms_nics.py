"""``iovctl vm ...`` and ``iovctl nic add|set|remove|list|show`` with every option (item 8)."""

from __future__ import annotations

import time

import pytest

VM_KEYS = {"name", "state", "nic_count", "nics", "vfs_in_use"}
NIC_KEYS = {
    "vm",
    "name",
    "switch",
    "mac",
    "iov_weight",
    "iov_queue_pairs_requested",
    "iov_queue_pairs_assigned",
    "iov_usage",
    "virtual_function",
    "vf_data_path_active",
    "vlan",
    "pvlan",
    "max_rate",
    "allow_mac_spoofing",
    "trust",
    "status",
    "status_description",
    "status_reason",
}
EVENT_KEYS = {"seq", "time", "level", "code", "object_kind", "object_name", "message"}


@pytest.fixture
def host(cli):
    cli.igb_pool(3)
    return cli


# -- VMs --------------------------------------------------------------------------


def test_vm_lifecycle(host):
    before = time.time()
    created = host.ok("vm", "create", "alpha")
    assert created == {"name": "alpha", "state": "off", "nic_count": 0, "nics": [], "vfs_in_use": 0}
    host.ok("nic", "add", "alpha", "--switch", "ext", "--iov-weight", "50")
    shown = host.ok("vm", "show", "alpha")
    assert set(shown) == VM_KEYS | {"network_adapters", "created_at", "started_at"}
    assert [n["name"] for n in shown["network_adapters"]] == ["nic0"]
    assert set(shown["network_adapters"][0]) == NIC_KEYS
    assert before <= shown["created_at"] <= time.time() and shown["started_at"] is None

    started = host.ok("vm", "start", "alpha")
    assert (started["state"], started["vfs_in_use"]) == ("running", 1)
    assert shown["created_at"] <= started["started_at"] <= time.time()
    assert started["created_at"] == shown["created_at"]
    seq = host.last_seq()
    again = host.fail("vm", "start", "alpha", code="vm-running", exit_code=4)
    assert "already running" in again.err  # says so, like virsh start
    assert host.events(since=seq) == []

    stopped = host.ok("vm", "stop", "alpha")
    assert (stopped["state"], stopped["vfs_in_use"]) == ("off", 0)
    assert stopped["started_at"] is None
    host.fail("vm", "stop", "alpha", code="vm-not-running", exit_code=4)

    assert host.ok("vm", "delete", "alpha") == {"deleted": "vm", "name": "alpha"}
    assert host.ok("vm", "list") == []
    assert host.ok("nic", "list") == []
    host.fail("vm", "show", "alpha", code="unknown-vm", exit_code=3)
    codes = [e["code"] for e in host.events() if e["object_kind"] == "vm"]
    assert codes == ["vm-created", "vm-started", "vm-stopped", "vm-deleted"]


def test_vm_show_times_belong_to_this_vm_not_a_deleted_namesake(host):
    host.ok("vm", "create", "alpha")
    host.ok("vm", "start", "alpha")
    host.ok("vm", "stop", "alpha")
    host.ok("vm", "delete", "alpha")
    time.sleep(0.01)
    again = host.ok("vm", "create", "alpha")
    assert again["state"] == "off"
    shown = host.ok("vm", "show", "alpha")
    assert shown["started_at"] is None  # the old alpha's start is not this one's
    table = host.run("vm", "show", "alpha").out
    assert "created" in table and time.strftime("%Y-%m-%d") in table


def test_vm_list(host):
    for name in ("charlie", "alpha", "bravo"):
        host.ok("vm", "create", name)
    host.ok("nic", "add", "bravo", "--switch", "ext")
    host.ok("nic", "add", "bravo", "--switch", "ext")
    vms = host.ok("vm", "list")
    assert [v["name"] for v in vms] == ["alpha", "bravo", "charlie"]
    for vm in vms:
        assert set(vm) == VM_KEYS
    assert vms[1]["nics"] == ["nic0", "nic1"] and vms[1]["nic_count"] == 2


def test_running_vm_cannot_be_deleted_and_delete_frees_its_macs(host):
    host.vm_with_nic("alpha", "--mac", "52:54:00:00:be:ef", "--iov-weight", "50", start=True)
    host.fail("vm", "delete", "alpha", code="vm-running", exit_code=4)
    host.ok("vm", "stop", "alpha")
    host.ok("vm", "delete", "alpha")
    # The MAC is free for another NIC now.
    host.vm_with_nic("bravo", "--mac", "52:54:00:00:be:ef")


# -- NIC add ----------------------------------------------------------------------


def test_nic_add_defaults(host):
    host.ok("vm", "create", "alpha")
    nic = host.ok("nic", "add", "alpha", "--switch", "ext")
    assert set(nic) == NIC_KEYS
    assert nic["name"] == "nic0" and nic["vm"] == "alpha" and nic["switch"] == "ext"
    assert nic["mac"].startswith("52:54:00:")
    assert nic["iov_weight"] == 0  # Hyper-V: SR-IOV is off until a weight is given
    assert (nic["iov_queue_pairs_requested"], nic["iov_queue_pairs_assigned"]) == (1, 0)
    assert (nic["iov_usage"], nic["virtual_function"], nic["vf_data_path_active"]) == (
        False,
        None,
        False,
    )
    assert (nic["vlan"], nic["pvlan"], nic["max_rate"]) == (None, None, None)
    assert (nic["allow_mac_spoofing"], nic["trust"]) == (False, False)
    assert nic["status"] == "off"
    second = host.ok("nic", "add", "alpha", "--switch", "ext")
    assert second["name"] == "nic1" and second["mac"] != nic["mac"]
    event = host.events()[-1]
    assert set(event) == EVENT_KEYS
    assert (event["code"], event["object_name"]) == ("nic-added", "alpha/nic1")


def test_nic_add_with_every_option(host):
    host.ok("vm", "create", "alpha")
    nic = host.ok(
        "nic", "add", "alpha", "--switch", "ext", "--name", "fast", "--mac", "52-54-00-AB-CD-EF",
        "--iov-weight", "70", "--iov-queue-pairs", "4", "--vlan", "42", "--max-rate", "2500",
        "--allow-mac-spoofing", "--trust",
    )  # fmt: skip
    assert nic["name"] == "fast"
    assert nic["mac"] == "52:54:00:ab:cd:ef"  # normalised
    assert (nic["iov_weight"], nic["iov_queue_pairs_requested"]) == (70, 4)
    assert (nic["vlan"], nic["max_rate"]) == (42, 2500)
    assert (nic["allow_mac_spoofing"], nic["trust"]) == (True, True)
    assert host.nic("alpha", "fast") == nic


def test_nic_add_bare_hex_mac(host):
    host.ok("vm", "create", "alpha")
    assert host.ok("nic", "add", "alpha", "--switch", "ext", "--mac", "525400A1B2C3")["mac"] == (
        "52:54:00:a1:b2:c3"
    )


@pytest.mark.parametrize(
    ("mode", "extra", "expected"),
    [
        ("isolated", ["--primary-vlan", "100", "--secondary-vlan", "101"], (100, 101)),
        ("community", ["--primary-vlan", "100", "--secondary-vlan", "102"], (100, 102)),
        ("promiscuous", ["--primary-vlan", "100"], (100, None)),
    ],
)
def test_nic_add_private_vlan(host, mode, extra, expected):
    host.ok("vm", "create", "alpha")
    nic = host.ok("nic", "add", "alpha", "--switch", "ext", "--pvlan", mode, *extra)
    assert {k: nic["pvlan"][k] for k in ("mode", "primary_vlan", "secondary_vlan")} == {
        "mode": mode,
        "primary_vlan": expected[0],
        "secondary_vlan": expected[1],
    }
    # The VM is off: nothing enforces it yet, nothing leaves the uplink.
    assert nic["pvlan"]["enforced_by"] is None
    assert nic["pvlan"]["uplink_tagged"] is False
    assert "nothing leaves the uplink: the VM is off" in nic["pvlan"]["description"]
    assert nic["vlan"] is None


def test_nic_add_to_a_running_vm_gets_a_vf_right_away(host):
    host.ok("vm", "create", "alpha")
    host.ok("vm", "start", "alpha")
    nic = host.ok("nic", "add", "alpha", "--switch", "ext", "--iov-weight", "5")
    assert nic["iov_usage"] is True and nic["status"] == "ok"


# -- NIC set ----------------------------------------------------------------------


def test_nic_set_every_option_and_its_undo(host):
    host.vm_with_nic("alpha")
    host.ok("switch", "create", "other", "--uplink", "ens2f0")
    n = host.ok(
        "nic", "set", "alpha", "nic0", "--mac", "52:54:00:00:00:aa", "--iov-weight", "30",
        "--iov-queue-pairs", "2", "--vlan", "7", "--max-rate", "100", "--allow-mac-spoofing",
        "--trust", "--switch", "other",
    )  # fmt: skip
    assert (n["mac"], n["iov_weight"], n["iov_queue_pairs_requested"]) == (
        "52:54:00:00:00:aa",
        30,
        2,
    )
    assert (n["vlan"], n["max_rate"], n["allow_mac_spoofing"], n["trust"], n["switch"]) == (
        7,
        100,
        True,
        True,
        "other",
    )
    n = host.ok("nic", "set", "alpha", "nic0", "--untagged", "--unlimited", "--no-trust")
    assert (n["vlan"], n["max_rate"], n["trust"]) == (None, None, False)
    assert n["allow_mac_spoofing"] is True  # untouched
    n = host.ok("nic", "set", "alpha", "nic0", "--no-allow-mac-spoofing")
    assert n["allow_mac_spoofing"] is False
    n = host.ok(
        "nic", "set", "alpha", "nic0", "--pvlan", "isolated", "--primary-vlan", "200",
        "--secondary-vlan", "201",
    )  # fmt: skip
    assert n["pvlan"]["mode"] == "isolated"
    assert (n["pvlan"]["primary_vlan"], n["pvlan"]["secondary_vlan"]) == (200, 201)
    n = host.ok("nic", "set", "alpha", "nic0", "--no-pvlan")
    assert n["pvlan"] is None
    # An access VLAN replaces a private VLAN, and the other way round.
    host.ok("nic", "set", "alpha", "nic0", "--pvlan", "promiscuous", "--primary-vlan", "300")
    n = host.ok("nic", "set", "alpha", "nic0", "--vlan", "8")
    assert (n["vlan"], n["pvlan"]) == (8, None)
    n = host.ok("nic", "set", "alpha", "nic0", "--pvlan", "promiscuous", "--primary-vlan", "300")
    assert (n["vlan"], n["pvlan"]["mode"]) == (None, "promiscuous")


def test_nic_set_without_a_change_logs_nothing(host):
    host.vm_with_nic("alpha", "--vlan", "5")
    seq = host.last_seq()
    host.ok("nic", "set", "alpha", "nic0", "--vlan", "5")
    assert host.events(since=seq) == []
    host.ok("nic", "set", "alpha", "nic0", "--vlan", "6")
    assert [e["code"] for e in host.events(since=seq)] == ["nic-changed"]


def test_nic_remove(host):
    host.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    assert host.ok("nic", "remove", "alpha", "nic0") == {"deleted": "nic", "name": "alpha/nic0"}
    assert host.ok("nic", "list", "alpha") == []
    assert not any(v["in_use"] for v in host.vfs())
    host.fail("nic", "show", "alpha", "nic0", code="unknown-nic", exit_code=3)
    codes = [e["code"] for e in host.events() if e["object_name"] == "alpha/nic0"]
    assert codes == ["nic-added", "vf-assigned", "vf-released", "nic-removed"]


def test_nic_list_filters_by_vm_and_sorts(host):
    host.vm_with_nic("bravo")
    host.vm_with_nic("alpha")
    host.ok("nic", "add", "alpha", "--switch", "ext")
    assert [(n["vm"], n["name"]) for n in host.ok("nic", "list")] == [
        ("alpha", "nic0"),
        ("alpha", "nic1"),
        ("bravo", "nic0"),
    ]
    assert [n["name"] for n in host.ok("nic", "list", "bravo")] == ["nic0"]
    host.fail("nic", "list", "nosuch", code="unknown-vm", exit_code=3)


def test_table_output_of_vm_and_nic_commands(host):
    result = host.run("vm", "create", "alpha")
    assert result.code == 0 and "alpha" in result.out
    result = host.run("nic", "add", "alpha", "--switch", "ext", "--iov-weight", "9")
    assert result.code == 0 and "nic0" in result.out
    result = host.run("vm", "start", "alpha")
    assert result.code == 0 and "enp1s0 vf0" in result.out
    result = host.run("nic", "list")
    assert result.code == 0 and "On VF 0 of enp1s0" in result.out
    result = host.run("events")
    assert result.code == 0 and "vf-assigned" in result.out


# -- events -----------------------------------------------------------------------


def test_events_limit_and_since(host):
    events = host.ok("events")
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert len(events) >= 2
    for event in events:
        assert set(event) == EVENT_KEYS
        assert event["level"] in {"info", "warning", "error"}
    assert host.ok("events", "--limit", "1") == events[-1:]
    assert host.ok("events", "--since", str(events[0]["seq"])) == events[1:]
    assert host.ok("events", "--since", str(events[-1]["seq"])) == []
