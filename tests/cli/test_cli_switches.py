"""``iovctl switch create|list|show|set|delete`` (issue 2, item 7)."""

from __future__ import annotations

SWITCH_KEYS = {
    "name",
    "uplink",
    "switch_type",
    "bridge",
    "iov_enabled",
    "iov_support",
    "iov_support_reasons",
    "iov_virtual_function_count",
    "iov_virtual_functions_in_use",
    "iov_queue_pair_count",
    "iov_queue_pairs_in_use",
    "nic_count",
}


def test_iov_switch_on_a_ready_adapter(cli):
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "3")
    switch = cli.ok("switch", "create", "ext", "--uplink", "enp1s0", "--iov")
    assert set(switch) == SWITCH_KEYS
    assert switch["name"] == "ext" and switch["uplink"] == "enp1s0"
    assert switch["switch_type"] == "external"
    assert len(switch["bridge"]) <= 15  # a Linux interface name
    assert (switch["iov_enabled"], switch["iov_support"], switch["iov_support_reasons"]) == (
        True,
        True,
        [],
    )
    assert switch["iov_virtual_function_count"] == 3
    assert switch["iov_queue_pair_count"] == 8
    assert (switch["iov_virtual_functions_in_use"], switch["iov_queue_pairs_in_use"]) == (0, 0)
    assert switch["nic_count"] == 0
    assert cli.switch("ext") == switch
    assert cli.ok("switch", "list") == [switch]
    assert [(e["level"], e["code"]) for e in cli.events()][-1] == ("info", "switch-created")


def test_counters_follow_use(cli):
    cli.igb_pool(3)
    cli.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    cli.vm_with_nic("beta", "--iov-weight", "50", start=True)
    cli.vm_with_nic("gamma", "--iov-weight", "0", start=True)
    switch = cli.switch("ext")
    assert switch["iov_virtual_functions_in_use"] == 2
    assert switch["iov_queue_pairs_in_use"] == 2
    assert switch["nic_count"] == 3
    cli.ok("vm", "stop", "alpha")
    assert cli.switch("ext")["iov_virtual_functions_in_use"] == 1


def test_iov_switch_on_an_adapter_without_sriov_is_created_with_a_warning(cli):
    switch = cli.ok("switch", "create", "office", "--uplink", "eno1", "--iov")
    assert switch["iov_enabled"] is True
    assert switch["iov_support"] is False
    codes = [r["code"] for r in switch["iov_support_reasons"]]
    assert codes == ["adapter-not-capable"]
    for reason in switch["iov_support_reasons"]:
        assert set(reason) == {"code", "message", "hint"} and reason["hint"]
    assert (switch["iov_virtual_function_count"], switch["iov_queue_pair_count"]) == (0, 0)
    warnings = [e for e in cli.events() if e["level"] == "warning"]
    assert [(e["code"], e["object_kind"], e["object_name"]) for e in warnings] == [
        ("switch-iov-unsupported", "switch", "office")
    ]
    assert "eno1" in warnings[0]["message"]


def test_iov_switch_on_a_host_without_iommu_reports_host_and_adapter_reasons(make_cli):
    host = make_cli("no-iommu")
    host.ok("adapter", "enable", "enp1s0", "--num-vfs", "2")  # VFs exist without an IOMMU
    switch = host.ok("switch", "create", "ext", "--uplink", "enp1s0", "--iov")
    assert (switch["iov_enabled"], switch["iov_support"]) == (True, False)
    codes = [r["code"] for r in switch["iov_support_reasons"]]
    assert codes == ["iommu-missing", "adapter-no-iommu-support"]
    assert switch["iov_virtual_function_count"] == 0
    assert [e["code"] for e in host.events() if e["level"] == "warning"] == [
        "switch-iov-unsupported"
    ]
    # A NIC that wants a VF says why it cannot have one.
    host.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    nic = host.nic("alpha")
    assert (nic["status"], nic["iov_usage"]) == ("degraded", False)
    assert "cannot use SR-IOV" in nic["status_description"]
    assert host.vfs() and not any(v["in_use"] for v in host.vfs())


def test_iov_switch_on_an_uplink_with_zero_vfs(cli):
    switch = cli.ok("switch", "create", "ext", "--uplink", "enp1s0", "--iov")
    assert switch["iov_support"] is False
    assert [r["code"] for r in switch["iov_support_reasons"]] == ["uplink-sriov-disabled"]
    assert "iovctl adapter enable enp1s0" in switch["iov_support_reasons"][0]["hint"]
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "1")
    assert cli.switch("ext")["iov_support"] is True


def test_switch_without_iov(cli):
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "3")
    switch = cli.ok("switch", "create", "plain", "--uplink", "enp1s0")
    assert (switch["iov_enabled"], switch["iov_support"]) == (False, False)
    assert [r["code"] for r in switch["iov_support_reasons"]] == ["switch-iov-off"]
    assert (switch["iov_virtual_function_count"], switch["iov_queue_pair_count"]) == (0, 0)
    assert not any(e["level"] == "warning" for e in cli.events())
    cli.vm_with_nic("alpha", "--iov-weight", "50", switch="plain", start=True)
    nic = cli.nic("alpha")
    assert (nic["status"], nic["iov_usage"]) == ("degraded", False)
    assert "without SR-IOV" in nic["status_description"]


def test_iov_is_fixed_at_creation(cli):
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "3")
    cli.ok("switch", "create", "ext", "--uplink", "enp1s0", "--iov")
    cli.ok("switch", "create", "plain", "--uplink", "ens2f0")
    result = cli.fail("switch", "set", "ext", "--no-iov", code="iov-fixed-at-creation", exit_code=4)
    assert "iovctl switch delete ext" in result.err and "iovctl switch create ext" in result.err
    result = cli.fail("switch", "set", "plain", "--iov", code="iov-fixed-at-creation", exit_code=4)
    assert "--uplink ens2f0 --iov" in result.err
    assert cli.switch("ext")["iov_enabled"] is True
    assert cli.switch("plain")["iov_enabled"] is False
    # Asking for what it already is changes nothing and succeeds.
    assert cli.ok("switch", "set", "ext", "--iov")["iov_enabled"] is True


def test_delete_and_recreate(cli):
    cli.ok("adapter", "enable", "enp1s0", "--num-vfs", "3")
    cli.ok("switch", "create", "ext", "--uplink", "enp1s0")
    cli.ok("vm", "create", "alpha")
    cli.ok("nic", "add", "alpha", "--switch", "ext")
    result = cli.fail("switch", "delete", "ext", code="switch-in-use", exit_code=4)
    assert "alpha/nic0" in result.err
    cli.ok("nic", "remove", "alpha", "nic0")
    assert cli.ok("switch", "delete", "ext") == {"deleted": "switch", "name": "ext"}
    assert cli.ok("switch", "list") == []
    cli.fail("switch", "show", "ext", code="unknown-switch", exit_code=3)
    # The uplink is free again, and IOV can now be chosen anew.
    assert cli.ok("switch", "create", "ext", "--uplink", "enp1s0", "--iov")["iov_support"] is True
    assert [e["code"] for e in cli.events() if e["object_kind"] == "switch"] == [
        "switch-created",
        "switch-deleted",
        "switch-created",
    ]


def test_one_switch_per_uplink(cli):
    cli.ok("switch", "create", "one", "--uplink", "ens2f0")
    result = cli.fail(
        "switch", "create", "two", "--uplink", "ens2f0", code="adapter-in-use", exit_code=4
    )
    assert "one" in result.err
    assert [s["name"] for s in cli.ok("switch", "list")] == ["one"]


def test_switch_list_is_sorted_and_table_output_works(cli):
    cli.ok("switch", "create", "zeta", "--uplink", "ens2f0")
    cli.ok("switch", "create", "alpha", "--uplink", "ens3f0np0", "--iov")
    assert [s["name"] for s in cli.ok("switch", "list")] == ["alpha", "zeta"]
    result = cli.run("switch", "list")
    assert result.code == 0 and "alpha" in result.out and "zeta" in result.out
    result = cli.run("switch", "show", "alpha")
    assert result.code == 0 and "uplink-sriov-disabled" in result.out
    result = cli.run("switch", "delete", "zeta")
    assert result.code == 0 and "deleted" in result.out
