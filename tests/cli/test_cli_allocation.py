"""VF behaviour end to end through the CLI (issue 2, item 9): assignment, fallback,
return, preemption, scrubbing, settings on the VF, queue pairs."""

from __future__ import annotations

import sqlite3

import pytest

from helpers import SCRUBBED_VF, allocation_problems, back_to_schema_3
from iovctl.adapters.sqlite.store import DB_NAME
from iovctl.domain.model import VfSetting
from iovctl.domain.nic_rules import settings_mask


@pytest.fixture
def pool(cli):
    """enp1s0 (igb) with 3 VFs behind the IOV switch ``ext``."""
    cli.igb_pool(3)
    return cli


def consistent(cli):
    problems = allocation_problems(cli.ok("vf", "list"), cli.ok("nic", "list"))
    assert problems == []


def codes_for(cli, obj, since=0):
    return [e["code"] for e in cli.events(since) if e["object_name"] == obj]


def test_a_vf_is_assigned_when_the_vm_starts(pool):
    off = pool.vm_with_nic("alpha", "--iov-weight", "50", "--mac", "52:54:00:00:00:a1")
    assert (off["status"], off["iov_usage"], off["virtual_function"]) == ("off", False, None)
    assert "not running" in off["status_description"]
    assert off["status_reason"] == "vm-off"
    assert not any(v["in_use"] for v in pool.vfs())

    pool.ok("vm", "start", "alpha")
    nic = pool.nic("alpha")
    assert nic["iov_usage"] is True
    assert nic["virtual_function"] == {
        "adapter": "enp1s0",
        "index": 0,
        "pci_address": "0000:01:10.0",
    }
    assert nic["vf_data_path_active"] is True
    assert nic["iov_queue_pairs_assigned"] == 1
    assert nic["status"] == "ok"
    assert nic["status_description"].startswith("On VF 0 of enp1s0")
    assert nic["status_reason"] == "on-vf"
    vf = pool.vf(0)
    assert (vf["in_use"], vf["vm_friendly_name"], vf["vm_nic"]) == (True, "alpha", "nic0")
    assert vf["mac"] == "52:54:00:00:00:a1"
    switch = pool.switch("ext")
    assert (switch["iov_virtual_functions_in_use"], switch["iov_queue_pairs_in_use"]) == (1, 1)
    assigned = [e for e in pool.events() if e["code"] == "vf-assigned"]
    assert [(e["object_kind"], e["object_name"]) for e in assigned] == [("nic", "alpha/nic0")]
    assert "0000:01:10.0" in assigned[0]["message"]
    consistent(pool)


def test_weight_zero_stays_on_the_software_path_without_complaint(pool):
    pool.vm_with_nic("alpha", start=True)  # default weight 0
    nic = pool.nic("alpha")
    assert (nic["status"], nic["iov_usage"]) == ("ok", False)
    assert "IOV weight 0" in nic["status_description"]
    assert not any(v["in_use"] for v in pool.vfs())


def test_fallback_when_vfs_run_out_says_why(pool):
    for name in ("a1", "a2", "a3", "a4"):
        pool.vm_with_nic(name, "--iov-weight", "50", start=True)
    holders = pool.holders()
    assert sorted(holders.values()) == ["a1/nic0", "a2/nic0", "a3/nic0"]
    waiter = pool.nic("a4")
    assert (waiter["status"], waiter["iov_usage"], waiter["virtual_function"]) == (
        "degraded",
        False,
        None,
    )
    assert waiter["vf_data_path_active"] is False
    assert "all 3 VFs of enp1s0 are in use" in waiter["status_description"]
    exhausted = [e for e in pool.events() if e["code"] == "vfs-exhausted"]
    assert [(e["level"], e["object_name"]) for e in exhausted] == [("warning", "a4/nic0")]
    consistent(pool)


@pytest.mark.parametrize(
    "free_one",
    [
        pytest.param(("vm", "stop", "a1"), id="vm-stop"),
        pytest.param(("nic", "remove", "a1", "nic0"), id="nic-remove"),
        pytest.param(("nic", "set", "a1", "nic0", "--iov-weight", "0"), id="weight-0"),
        pytest.param(("nic", "set", "a1", "nic0", "--switch", "plain"), id="moved-away"),
        pytest.param(("adapter", "set", "enp1s0", "--num-vfs", "4", "--force"), id="more-vfs"),
    ],
)
def test_a_waiting_nic_gets_the_vf_that_frees_up(pool, free_one):
    pool.ok("switch", "create", "plain", "--uplink", "eno1")
    for name in ("a1", "a2", "a3", "a4"):
        pool.vm_with_nic(name, "--iov-weight", "50", "--vlan", "20", "--trust", start=True)
    assert pool.nic("a4")["iov_usage"] is False
    seq = pool.last_seq()

    pool.ok(*free_one)
    waiter = pool.nic("a4")
    assert waiter["iov_usage"] is True and waiter["status"] == "ok"
    assert "vf-assigned" in codes_for(pool, "a4/nic0", seq)
    vf = pool.vf(waiter["virtual_function"]["index"])
    # The VF carries the new tenant's settings, nothing of the old one.
    assert (vf["mac"], vf["vlan"], vf["trust"], vf["vm_friendly_name"]) == (
        waiter["mac"],
        20,
        True,
        "a4",
    )
    consistent(pool)


def test_a_released_vf_is_scrubbed_before_reuse(pool):
    pool.vm_with_nic("a1", "--iov-weight", "50", start=True)
    pool.vm_with_nic("a2", "--iov-weight", "50", start=True)
    pool.vm_with_nic("a3", "--iov-weight", "50", start=True)
    pool.vm_with_nic("a4", "--iov-weight", "50", start=True)
    seq = pool.last_seq()
    pool.ok("vm", "stop", "a1")
    events = pool.events(seq)
    release = next(i for i, e in enumerate(events) if e["code"] == "vf-released")
    grant = next(i for i, e in enumerate(events) if e["code"] == "vf-assigned")
    assert release < grant  # scrubbed and released first, then handed on
    assert "scrubbed" in events[release]["message"]


def test_freed_vfs_are_scrubbed_to_defaults(pool):
    pool.vm_with_nic(
        "alpha", "--iov-weight", "50", "--vlan", "99", "--trust", "--max-rate", "300",
        "--allow-mac-spoofing", start=True,
    )  # fmt: skip
    dirty = pool.vf(0)
    assert (dirty["vlan"], dirty["trust"], dirty["max_rate"], dirty["spoof_check"]) == (
        99,
        True,
        300,
        False,
    )
    pool.ok("vm", "stop", "alpha")
    for vf in pool.vfs():
        assert {k: vf[k] for k in SCRUBBED_VF} == SCRUBBED_VF
        assert (vf["in_use"], vf["vm_friendly_name"], vf["vm_nic"]) == (False, None, None)
    nic = pool.nic("alpha")
    assert (nic["iov_usage"], nic["iov_queue_pairs_assigned"], nic["status"]) == (False, 0, "off")


def test_a_vf_carries_the_nics_settings(pool):
    pool.vm_with_nic(
        "alpha", "--iov-weight", "50", "--mac", "52:54:00:12:34:56", "--vlan", "123",
        "--max-rate", "750", "--trust", start=True,
    )  # fmt: skip
    vf = pool.vf(0)
    assert vf["mac"] == "52:54:00:12:34:56"
    assert (vf["vlan"], vf["max_rate"], vf["trust"]) == (123, 750, True)
    assert vf["spoof_check"] is True  # on unless MAC spoofing is allowed
    assert (vf["min_rate"], vf["link_state"], vf["qos"]) == (0, "auto", 0)

    pool.vm_with_nic("bravo", "--iov-weight", "50", "--allow-mac-spoofing", start=True)
    vf = pool.vf(1)
    assert (vf["spoof_check"], vf["trust"], vf["vlan"], vf["max_rate"]) == (False, False, 0, 0)


def test_nic_set_rewrites_the_vf_in_place(pool):
    pool.vm_with_nic("alpha", "--iov-weight", "50", "--vlan", "10", start=True)
    index = pool.nic("alpha")["virtual_function"]["index"]
    pool.ok(
        "nic", "set", "alpha", "nic0", "--vlan", "11", "--mac", "52:54:00:00:11:11",
        "--max-rate", "40", "--trust", "--allow-mac-spoofing",
    )  # fmt: skip
    assert pool.nic("alpha")["virtual_function"]["index"] == index  # kept its VF
    vf = pool.vf(index)
    assert (vf["vlan"], vf["mac"], vf["max_rate"], vf["trust"], vf["spoof_check"]) == (
        11,
        "52:54:00:00:11:11",
        40,
        True,
        False,
    )
    pool.ok(
        "nic", "set", "alpha", "nic0", "--untagged", "--unlimited", "--no-trust",
        "--no-allow-mac-spoofing",
    )  # fmt: skip
    vf = pool.vf(index)
    assert (vf["vlan"], vf["max_rate"], vf["trust"], vf["spoof_check"]) == (0, 0, False, True)
    assert vf["mac"] == "52:54:00:00:11:11"


def test_higher_weight_preempts_the_lowest_holder(pool):
    pool.vm_with_nic("web1", "--iov-weight", "50", start=True)
    pool.vm_with_nic("batch", "--iov-weight", "10", start=True)
    pool.vm_with_nic("web2", "--iov-weight", "50", start=True)
    batch_vf = pool.nic("batch")["virtual_function"]["index"]
    seq = pool.last_seq()

    pool.vm_with_nic("db", "--iov-weight", "80", start=True)
    db = pool.nic("db")
    assert db["iov_usage"] is True and db["virtual_function"]["index"] == batch_vf
    batch = pool.nic("batch")
    assert (batch["iov_usage"], batch["status"]) == (False, "degraded")
    preempted = [e for e in pool.events(seq) if e["code"] == "vf-preempted"]
    assert [(e["level"], e["object_name"]) for e in preempted] == [("warning", "batch/nic0")]
    assert "db/nic0" in preempted[0]["message"] and "80 > 10" in preempted[0]["message"]
    assert pool.nic("web1")["iov_usage"] and pool.nic("web2")["iov_usage"]
    assert pool.vf(batch_vf)["mac"] == db["mac"]
    consistent(pool)


def test_equal_weights_never_preempt_first_come_first_served(pool):
    for name in ("a1", "a2", "a3"):
        pool.vm_with_nic(name, "--iov-weight", "50", start=True)
    before = pool.holders()
    pool.vm_with_nic("late1", "--iov-weight", "50", start=True)
    pool.vm_with_nic("late2", "--iov-weight", "50", start=True)
    assert pool.holders() == before
    assert "vf-preempted" not in [e["code"] for e in pool.events()]
    # When one VF frees up, the waiter that came first gets it.
    pool.ok("vm", "stop", "a2")
    assert pool.nic("late1")["iov_usage"] is True
    assert pool.nic("late2")["iov_usage"] is False


def test_a_higher_weight_waiter_is_served_before_an_earlier_lower_one(pool):
    for name in ("a1", "a2", "a3"):
        pool.vm_with_nic(name, "--iov-weight", "90", start=True)
    pool.vm_with_nic("low", "--iov-weight", "20", start=True)
    pool.vm_with_nic("high", "--iov-weight", "60", start=True)
    pool.ok("vm", "stop", "a1")
    assert pool.nic("high")["iov_usage"] is True
    assert pool.nic("low")["iov_usage"] is False


def test_raising_a_waiters_weight_preempts(pool):
    for name, weight in (("a1", "50"), ("a2", "40"), ("a3", "50")):
        pool.vm_with_nic(name, "--iov-weight", weight, start=True)
    pool.vm_with_nic("waiter", "--iov-weight", "40", start=True)
    assert pool.nic("waiter")["iov_usage"] is False
    pool.ok("nic", "set", "waiter", "nic0", "--iov-weight", "45")
    assert pool.nic("waiter")["iov_usage"] is True
    assert pool.nic("a2")["iov_usage"] is False
    assert codes_for(pool, "a2/nic0")[-2:] == ["vf-preempted", "vfs-exhausted"]
    consistent(pool)


def test_lowering_a_holders_weight_lets_a_stronger_waiter_in(pool):
    for name in ("a1", "a2", "a3", "waiter"):
        pool.vm_with_nic(name, "--iov-weight", "50", start=True)
    pool.ok("nic", "set", "a3", "nic0", "--iov-weight", "5")
    assert pool.nic("waiter")["iov_usage"] is True
    assert pool.nic("a3")["iov_usage"] is False


def test_fewer_vfs_by_force_keep_the_heaviest_nics(pool):
    for name, weight in (("light", "10"), ("middle", "50"), ("heavy", "80")):
        pool.vm_with_nic(name, "--iov-weight", weight, start=True)
    pool.ok("adapter", "set", "enp1s0", "--num-vfs", "2", "--force")
    assert sorted(pool.holders().values()) == ["heavy/nic0", "middle/nic0"]
    assert pool.nic("light")["status"] == "degraded"
    consistent(pool)


def test_moving_a_holder_to_another_iov_switch(pool):
    pool.ok("adapter", "enable", "ens3f0np0", "--num-vfs", "2")
    pool.ok("switch", "create", "mlx", "--uplink", "ens3f0np0", "--iov")
    pool.vm_with_nic("alpha", "--iov-weight", "50", "--vlan", "33", start=True)
    pool.ok("nic", "set", "alpha", "nic0", "--switch", "mlx")
    nic = pool.nic("alpha")
    assert nic["virtual_function"] == {
        "adapter": "ens3f0np0",
        "index": 0,
        "pci_address": "0000:af:00.2",
    }
    assert pool.vf(0, "ens3f0np0")["vlan"] == 33
    assert {k: pool.vf(0)[k] for k in SCRUBBED_VF} == SCRUBBED_VF  # the igb VF is clean
    consistent(pool)


# -- settings a driver cannot carry -------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "secondary"),
    [("isolated", ["--secondary-vlan", "101"]), ("community", ["--secondary-vlan", "101"]),
     # A promiscuous VF on the primary VLAN would not reach the isolated and community
     # ports of that VLAN: it needs the private VLAN setting as much as they do.
     ("promiscuous", [])],
)  # fmt: skip
def test_private_vlan_on_igb_stays_on_the_software_path(pool, mode, secondary):
    nic = pool.vm_with_nic(
        "alpha", "--iov-weight", "50", "--pvlan", mode, "--primary-vlan", "100", *secondary,
        start=True,
    )  # fmt: skip
    assert (nic["iov_usage"], nic["status"]) == (False, "degraded")
    assert "igb" in nic["status_description"]
    assert "private VLAN" in nic["status_description"]
    assert nic["pvlan"]["enforced_by"] == "software"
    assert not any(v["in_use"] for v in pool.vfs())
    # The simulated bridge filters VLANs, as a distribution kernel's: the uplink tags
    # the frames with the VLAN the port sends in (the primary when promiscuous).
    assert nic["pvlan"]["uplink_tagged"] is True
    shown = pool.run("nic", "show", "alpha", "nic0").out
    assert f"private VLAN: {mode}" in shown
    assert "enforced by the switch's bridge (software path)" in shown
    assert f"tagged with VLAN {101 if secondary else 100}" in " ".join(shown.split())


def test_setting_a_private_vlan_on_a_holder_revokes_and_clearing_it_gives_a_vf_back(pool):
    pool.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    pool.ok(
        "nic", "set", "alpha", "nic0", "--pvlan", "isolated", "--primary-vlan", "100",
        "--secondary-vlan", "101",
    )  # fmt: skip
    nic = pool.nic("alpha")
    assert (nic["iov_usage"], nic["status"]) == (False, "degraded")
    assert "igb" in nic["status_description"]
    assert codes_for(pool, "alpha/nic0")[-1] == "vf-revoked"
    assert {k: pool.vf(0)[k] for k in SCRUBBED_VF} == SCRUBBED_VF
    pool.ok("nic", "set", "alpha", "nic0", "--no-pvlan")
    assert pool.nic("alpha")["iov_usage"] is True


@pytest.fixture
def promiscuous_holder(pool):
    """alpha/nic0 holds VF 0 as a promiscuous private VLAN NIC, stored by an iovctl of
    schema 2: then a promiscuous NIC asked its VF for nothing more than its MAC, so
    igb gave it one. beta/nic0, a plain NIC, holds VF 1. Opening the store brings
    alpha's VF needs to today's rule."""
    pool.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    pool.vm_with_nic("beta", "--iov-weight", "50", start=True)
    assert pool.holders() == {0: "alpha/nic0", 1: "beta/nic0"}
    db = sqlite3.connect(pool.state_dir / DB_NAME)
    db.execute(
        "UPDATE nic SET pvlan_mode = 'promiscuous', pvlan_primary = 100, vf_needs = ?"
        " WHERE vm = 'alpha'",
        (settings_mask({VfSetting.MAC}),),
    )
    back_to_schema_3(db)
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    return pool


def _moved_to_the_software_path(pool, since):
    nic = pool.nic("alpha")
    assert (nic["iov_usage"], nic["status"]) == (False, "degraded")
    assert "the igb driver does not support private VLAN isolation" in nic["status_description"]
    assert nic["pvlan"]["enforced_by"] == "software"
    events = [e for e in pool.events(since) if e["object_name"] == "alpha/nic0"]
    assert [e["code"] for e in events if e["code"] != "nic-changed"] == ["vf-revoked"]
    assert "private VLAN isolation" in events[-1]["message"]
    assert {k: pool.vf(0)[k] for k in SCRUBBED_VF} == SCRUBBED_VF
    consistent(pool)


def test_apply_moves_a_holder_of_an_older_rule_to_the_software_path(promiscuous_holder):
    """Its settings are not written again (igb would refuse them: a failed grant);
    its VF is taken back with the reason, and apply says so."""
    pool = promiscuous_holder
    since = pool.last_seq()
    report = pool.ok("apply")
    assert report["changes"] == [
        {
            "action": "release-vf",
            "adapter": "enp1s0",
            "index": 0,
            "tenant": "alpha/nic0",
            "reason": report["changes"][0]["reason"],
        }
    ]
    assert "igb driver does not support private VLAN isolation" in report["changes"][0]["reason"]
    _moved_to_the_software_path(pool, since)
    assert pool.ok("apply")["changed"] == 0


def test_nic_set_moves_a_holder_of_an_older_rule_to_the_software_path(promiscuous_holder):
    pool = promiscuous_holder
    since = pool.last_seq()
    pool.ok("nic", "set", "alpha", "nic0", "--max-rate", "100")
    _moved_to_the_software_path(pool, since)
    assert pool.nic("alpha")["max_rate"] == 100


@pytest.mark.parametrize(
    "command",
    [("vm", "create", "gamma"), ("nic", "set", "beta", "nic0", "--iov-weight", "0")],
    ids=["no-rebalance", "vf-given-back"],
)
def test_a_vf_given_back_moves_a_holder_of_an_older_rule_to_the_software_path(
    promiscuous_holder, command
):
    """Another NIC gives its VF back: the switch's pool is rebalanced, and the
    holder igb cannot serve gives its VF back too, and gets none of the free ones. A
    command that does not touch the pool leaves it be."""
    pool = promiscuous_holder
    since = pool.last_seq()
    pool.ok(*command)
    if command[0] == "vm":
        assert pool.holders() == {0: "alpha/nic0", 1: "beta/nic0"}
        return
    _moved_to_the_software_path(pool, since)
    assert pool.holders() == {}


# -- queue pairs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adapter", "requested", "assigned"),
    [
        ("ens2f0", 32, 16),  # ice: 16 per VF
        ("ens2f0", 4, 4),
        ("ens2f0", 1, 1),
        ("ens3f0np0", 8, 4),  # mlx5: 4 per VF
        ("ens3f0np0", 2, 2),
    ],
)
def test_queue_pairs_are_capped_by_the_per_vf_limit(cli, adapter, requested, assigned):
    cli.ok("adapter", "enable", adapter, "--num-vfs", "4")
    cli.ok("switch", "create", "fast", "--uplink", adapter, "--iov")
    nic = cli.vm_with_nic(
        "alpha", "--iov-weight", "50", "--iov-queue-pairs", str(requested), switch="fast",
        start=True,
    )  # fmt: skip
    assert nic["iov_queue_pairs_requested"] == requested
    assert nic["iov_queue_pairs_assigned"] == assigned
    expected_pairs = "queue pair" if assigned == 1 else "queue pairs"
    assert f"({assigned} {expected_pairs})" in nic["status_description"]
    assert cli.switch("fast")["iov_queue_pairs_in_use"] == assigned


SMALL_QP_SPEC = """\
name: small-qp
adapters:
  - name: enp5s0
    pci_address: "0000:05:00.0"
    driver: ice
    sriov: {total_vfs: 4, queue_pairs: 10, max_queue_pairs_per_vf: 4}
"""


def test_queue_pairs_are_capped_by_what_the_uplink_has_left(make_cli, tmp_path):
    spec = tmp_path / "small-qp.yaml"
    spec.write_text(SMALL_QP_SPEC)
    host = make_cli(str(spec), name="small")
    host.ok("adapter", "enable", "enp5s0")
    host.ok("switch", "create", "ext", "--uplink", "enp5s0", "--iov")
    assigned = []
    for name in ("q1", "q2", "q3", "q4"):
        nic = host.vm_with_nic(name, "--iov-weight", "50", "--iov-queue-pairs", "4", start=True)
        assigned.append(nic["iov_queue_pairs_assigned"])
    assert assigned == [4, 4, 2, 0]  # min(requested 4, per VF 4, left 10-8=2), then none left
    q4 = host.nic("q4")
    assert (q4["iov_usage"], q4["status"]) == (False, "degraded")
    assert "no queue pairs left on enp5s0" in q4["status_description"]
    assert "queue-pairs-exhausted" in codes_for(host, "q4/nic0")
    assert len(host.vfs("enp5s0")) == 4 and host.vf(3, "enp5s0")["in_use"] is False
    switch = host.switch("ext")
    assert (switch["iov_queue_pair_count"], switch["iov_queue_pairs_in_use"]) == (10, 10)
    host.ok("vm", "stop", "q1")  # 4 queue pairs come back
    assert host.nic("q4")["iov_queue_pairs_assigned"] == 4


def test_lowering_the_requested_queue_pairs_of_a_holder_lowers_the_assignment(cli):
    """assigned = min(requested, ...) must hold after ``nic set`` too."""
    cli.ok("adapter", "enable", "ens3f0np0", "--num-vfs", "2")
    cli.ok("switch", "create", "mlx", "--uplink", "ens3f0np0", "--iov")
    cli.vm_with_nic(
        "alpha", "--iov-weight", "50", "--iov-queue-pairs", "4", switch="mlx", start=True
    )
    nic = cli.ok("nic", "set", "alpha", "nic0", "--iov-queue-pairs", "1")
    assert nic["iov_queue_pairs_requested"] == 1
    assert nic["iov_queue_pairs_assigned"] <= nic["iov_queue_pairs_requested"]
    assert cli.switch("mlx")["iov_queue_pairs_in_use"] == nic["iov_queue_pairs_assigned"]


def test_resizing_a_holders_queue_pairs_respects_what_is_left(make_cli, tmp_path):
    spec = tmp_path / "small-qp.yaml"
    spec.write_text(SMALL_QP_SPEC)
    host = make_cli(str(spec), name="small")
    host.ok("adapter", "enable", "enp5s0")
    host.ok("switch", "create", "ext", "--uplink", "enp5s0", "--iov")
    for name in ("q1", "q2", "q3", "q4"):
        host.vm_with_nic(name, "--iov-weight", "50", "--iov-queue-pairs", "4", start=True)
    assert host.nic("q4")["iov_usage"] is False  # 4 + 4 + 2 = all 10 queue pairs
    # q1 asks for 1: 3 queue pairs come back and the waiting q4 gets a VF with them.
    assert (
        host.ok("nic", "set", "q1", "nic0", "--iov-queue-pairs", "1")["iov_queue_pairs_assigned"]
        == 1
    )
    q4 = host.nic("q4")
    assert (q4["iov_usage"], q4["iov_queue_pairs_assigned"]) == (True, 3)
    # q3 asks for more than is left: it keeps what it has (nothing is free).
    assert (
        host.ok("nic", "set", "q3", "nic0", "--iov-queue-pairs", "3")["iov_queue_pairs_assigned"]
        == 2
    )
    assert host.switch("ext")["iov_queue_pairs_in_use"] == 1 + 4 + 2 + 3
    # With queue pairs free again, a holder asking for more gets up to the per-VF limit.
    host.ok("vm", "stop", "q2")
    assert (
        host.ok("nic", "set", "q1", "nic0", "--iov-queue-pairs", "8")["iov_queue_pairs_assigned"]
        == 4
    )
    assert host.switch("ext")["iov_queue_pairs_in_use"] == 4 + 2 + 3


def test_many_claims_at_once_follow_the_weight_order(cli):
    """More waiters and more holders than one planning round looks at: the outcome is
    still the rule's (heaviest NICs hold the VFs, equal weights keep their place)."""
    cli.ok("adapter", "enable", "ens2f0", "--num-vfs", "12")
    cli.ok("switch", "create", "fast", "--uplink", "ens2f0", "--iov")
    cli.ok("vm", "create", "many")
    for weight in range(1, 21):
        cli.ok(
            "nic",
            "add",
            "many",
            "--switch",
            "fast",
            "--name",
            f"w{weight}",
            "--iov-weight",
            str(weight),
        )
    cli.ok("vm", "start", "many")
    holders = {n["name"] for n in cli.ok("nic", "list", "many") if n["iov_usage"]}
    assert holders == {f"w{weight}" for weight in range(9, 21)}
    consistent(cli)

    cli.ok("vm", "create", "heavy")
    for i in range(12):
        cli.ok("nic", "add", "heavy", "--switch", "fast", "--name", f"h{i}", "--iov-weight", "100")
    cli.ok("vm", "start", "heavy")
    holders = {(n["vm"], n["name"]) for n in cli.ok("nic", "list") if n["iov_usage"]}
    assert holders == {("heavy", f"h{i}") for i in range(12)}
    preempted = [e["object_name"] for e in cli.events() if e["code"] == "vf-preempted"]
    assert sorted(preempted) == sorted(f"many/w{weight}" for weight in range(9, 21))
    consistent(cli)
    # They come back, heaviest first, as the heavy VM stops.
    cli.ok("vm", "stop", "heavy")
    holders = {n["name"] for n in cli.ok("nic", "list", "many") if n["iov_usage"]}
    assert holders == {f"w{weight}" for weight in range(9, 21)}
    consistent(cli)


def test_a_vf_lost_underneath_shows_at_once_and_apply_brings_it_back(cli):
    """A reboot (here the simulated host's power cycle) takes the VFs and the VMs
    away: the NIC says so right away, not ``ok`` until someone runs apply."""
    cli.igb_pool(2)
    cli.vm_with_nic("alpha", "--iov-weight", "50", start=True)
    cli.ok("host", "power-cycle")
    nic = cli.nic("alpha")
    assert (nic["status"], nic["vf_data_path_active"]) == ("degraded", False)
    assert "VF 0 of enp1s0 is gone" in nic["status_description"]
    assert "iovctl apply" in nic["status_description"]

    report = cli.ok("apply")
    assert {c["action"] for c in report["changes"]} >= {"set-vf-count", "attach-vf"}
    nic = cli.nic("alpha")
    assert (nic["status"], nic["vf_data_path_active"]) == ("ok", True)
    assert cli.ok("apply")["changed"] == 0

