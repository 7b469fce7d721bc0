"""iovctl as a real program: ``python -m iovctl`` subprocesses, exit codes, no traceback,
one consistent simulated host across processes, env vars, the demo, ``--version``;
and how the CLI treats its state directory (wrong host, too new, unusable)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from helpers import assert_clean_error, clean_env, run_in_process, run_subprocess
from iovctl import __version__


def test_version():
    result = run_subprocess(["--version"])
    assert (result.code, result.out.strip(), result.err) == (0, f"iovctl {__version__}", "")
    # Through argparse too, when other options come with it.
    result = run_subprocess(["--sim", "demo", "--version"])
    assert (result.code, result.out.strip()) == (0, f"iovctl {__version__}")


def test_demo_runs_the_whole_story(tmp_path):
    result = run_subprocess(["demo", "--keep", str(tmp_path / "kept")], cwd=tmp_path)
    assert result.code == 0, result.err[-2000:]
    output = result.out + result.err
    assert "Traceback" not in output
    assert "error[internal]" not in output
    for expected in (
        "iommu-missing",  # a host that is not ready says why
        "firmware-sriov-disabled",
        "switch-iov-unsupported",  # IOV switch that cannot work
        "vf-assigned",
        "vfs-exhausted",  # scarcity and fallback
        "vf-preempted",  # preemption
        "vf-released",  # return of a VF
        "error[iov-fixed-at-creation]",  # refused IOV change
        "error[vfs-assigned]",
        "error[invalid-mac]",
        "Events",  # ends with the event log
    ):
        assert expected in output, expected
    # The event log is the last thing printed.
    assert result.out.rfind("Events") > result.out.rfind("$ iovctl")
    # The kept state is a consistent host a user can go on exploring.
    env = clean_env()
    nics = run_subprocess(
        ["--state-dir", str(tmp_path / "kept" / "demo"), "nic", "list", "-o", "json"], env=env
    )
    assert nics.code == 0, nics.err
    held = [n["virtual_function"]["index"] for n in json.loads(nics.out) if n["virtual_function"]]
    assert len(held) == len(set(held)) > 0


def test_state_persists_across_processes(tmp_path):
    state = ["--sim", "demo", "--state-dir", str(tmp_path / "state")]
    for args in (
        ["adapter", "enable", "enp1s0", "--num-vfs", "3"],
        ["switch", "create", "ext", "--uplink", "enp1s0", "--iov"],
        ["vm", "create", "alpha"],
        ["nic", "add", "alpha", "--switch", "ext", "--iov-weight", "50"],
        ["vm", "start", "alpha"],
    ):
        result = run_subprocess([*state, *args, "-o", "json"])
        assert result.code == 0, (args, result.err)
    vfs = run_subprocess([*state, "vf", "list", "-o", "json"])
    assert vfs.code == 0
    assert [(v["function_id"], v["vm_friendly_name"]) for v in json.loads(vfs.out)] == [
        (0, "alpha"),
        (1, None),
        (2, None),
    ]


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (
            ["nic", "add", "alpha", "--switch", "ext", "--mac", "01:02:03:04:05:06"],
            "invalid-mac",
            2,
        ),
        (["vm", "start", "nosuch"], "unknown-vm", 3),
        (["vm", "create", "alpha"], "duplicate-name", 4),
        (["adapter", "set", "enp1s0", "--num-vfs", "99"], "vf-count-out-of-range", 5),
        (["vm", "frobnicate"], "usage", 2),
    ],
)
def test_exit_codes_of_a_real_process(tmp_path, args, code, exit_code):
    state = ["--sim", "demo", "--state-dir", str(tmp_path / "state")]
    assert run_in_process([*state, "vm", "create", "alpha"]).code == 0
    assert run_in_process([*state, "switch", "create", "ext", "--uplink", "enp1s0"]).code == 0
    assert_clean_error(run_subprocess([*state, *args]), code, exit_code)


def test_env_vars_select_the_host_and_the_state_dir(monkeypatch, tmp_path):
    state_dir = tmp_path / "from-env"
    monkeypatch.setenv("IOVCTL_STATE_DIR", str(state_dir))
    monkeypatch.setenv("IOVCTL_SIM", "igb")
    result = run_in_process(["host", "-o", "json"])
    assert result.code == 0, result.err
    assert json.loads(result.out)["backend"] == "simulated:igb"
    assert (state_dir / "iovctl.db").exists()
    # The stored host answers later commands without IOVCTL_SIM.
    monkeypatch.delenv("IOVCTL_SIM")
    assert json.loads(run_in_process(["host", "-o", "json"]).out)["backend"] == "simulated:igb"
    # --state-dir and --sim win over IOVCTL_STATE_DIR and IOVCTL_SIM.
    monkeypatch.setenv("IOVCTL_SIM", "igb")
    other = tmp_path / "from-flag"
    result = run_in_process(["--state-dir", str(other), "--sim", "no-iommu", "host", "-o", "json"])
    assert json.loads(result.out)["backend"] == "simulated:no-iommu"
    assert (other / "iovctl.db").exists()


def test_env_vars_in_a_real_process(tmp_path):
    env = clean_env(IOVCTL_STATE_DIR=str(tmp_path / "env-state"), IOVCTL_SIM="bios-off")
    result = run_subprocess(["host", "-o", "json"], env=env)
    assert result.code == 0, result.err
    assert json.loads(result.out)["backend"] == "simulated:bios-off"
    assert (tmp_path / "env-state" / "iovctl.db").exists()


def test_another_host_on_the_same_state_dir_is_refused(make_cli):
    demo = make_cli("demo", name="shared")
    demo.ok("vm", "create", "alpha")
    igb = make_cli("igb", name="shared")
    result = run_in_process(["--sim", "igb", "--state-dir", str(igb.state_dir), "host"])
    assert_clean_error(result, "state-backend-mismatch", 6)
    assert "demo" in result.err and "igb" in result.err
    # The same host, asked for again by name, is fine.
    assert (
        run_in_process(["--sim", "demo", "--state-dir", str(demo.state_dir), "vm", "list"]).code
        == 0
    )


def test_the_runtime_flag_chooses_the_runtime_once(tmp_path):
    """``--runtime`` (like IOVCTL_RUNTIME) is fixed when a state directory is first
    used: later commands need no flag, and another runtime is refused, naming both."""
    state = str(tmp_path / "rt")
    first = run_in_process(
        ["--state-dir", state, "--sim", "demo", "--runtime", "sim", "vm", "create", "a"]
    )
    assert first.code == 0, first.err
    assert (
        json.loads(run_in_process(["--state-dir", state, "vm", "list", "-o", "json"]).out)[0][
            "name"
        ]
        == "a"
    )
    other = run_in_process(["--state-dir", state, "--runtime", "netns", "vm", "list"])
    assert_clean_error(other, "state-backend-mismatch", 6)
    assert "'sim'" in other.err and "'netns'" in other.err and "leave the option out" in other.err


def test_an_unknown_runtime_is_refused_before_the_state_dir_is_made(tmp_path):
    state = tmp_path / "never"
    result = run_in_process(["--state-dir", str(state), "--runtime", "xen", "vm", "list"])
    assert_clean_error(result, "unknown-runtime", 2)
    assert "--runtime" in result.err
    assert not state.exists()


@pytest.mark.parametrize("flag", [("--runtime", "sim"), ("--libvirt-uri", "test:///default")])
def test_runtime_flags_and_connect_are_refused_together(flag):
    result = run_in_process(["--connect", "unix:///nonexistent.sock", *flag, "vm", "list"])
    assert_clean_error(result, "conflicting-options", 2)
    assert flag[0] in result.err


def test_the_libvirt_uri_flag_is_fixed_with_the_runtime(tmp_path):
    pytest.importorskip("libvirt", reason="libvirt-python is not installed (extra: libvirt)")
    state = str(tmp_path / "lv")
    uri = ("--runtime", "libvirt", "--libvirt-uri", "test:///default")
    assert run_in_process(["--state-dir", state, "--sim", "demo", *uri, "vm", "list"]).code == 0
    again = run_in_process(["--state-dir", state, "--libvirt-uri", "qemu:///session", "vm", "list"])
    assert_clean_error(again, "state-backend-mismatch", 6)
    assert "test:///default" in again.err


def test_unknown_and_malformed_host_specs(make_cli, tmp_path):
    assert_clean_error(make_cli("nope").run("host"), "unknown-host-spec", 3)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [\n")
    assert_clean_error(make_cli(str(broken), name="b1").run("host"), "invalid-host-spec", 2)
    bad_field = tmp_path / "bad-field.yaml"
    bad_field.write_text("name: x\nadapters:\n  - {name: eth0, pci_address: nope}\n")
    result = make_cli(str(bad_field), name="b2").run("host")
    assert_clean_error(result, "invalid-host-spec", 2)
    assert "pci_address" in result.err


def test_a_spec_file_by_path(make_cli, tmp_path):
    spec = tmp_path / "lab.yaml"
    spec.write_text(
        "name: lab\n"
        "iommu: {present: true, enabled: false}\n"
        "adapters:\n"
        "  - name: ens9\n"
        '    pci_address: "0000:09:00.0"\n'
        "    driver: ixgbe\n"
        "    sriov: {total_vfs: 63, max_queue_pairs_per_vf: 2}\n"
    )
    host = make_cli(str(spec), name="lab").ok("host")
    assert host["backend"] == "simulated:lab"
    assert [r["code"] for r in host["iov_support_reasons"]] == ["iommu-disabled"]
    assert host["adapters"] == [
        {"name": "ens9", "sriov_support": "no-iommu-support", "num_vfs": 0, "total_vfs": 63}
    ]


def test_state_written_by_a_newer_iovctl_is_refused(cli):
    cli.ok("vm", "create", "alpha")
    conn = sqlite3.connect(cli.state_dir / "iovctl.db")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    result = cli.run("vm", "list")
    assert_clean_error(result, "state-too-new", 6)
    assert "99" in result.err
    sub = run_subprocess(["--state-dir", str(cli.state_dir), "vm", "create", "beta"])
    assert_clean_error(sub, "state-too-new", 6)


def test_unusable_state_dirs(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    result = run_in_process(["--state-dir", str(a_file), "vm", "list"])
    assert_clean_error(result, "state-dir-unusable", 6)
    result = run_in_process(["--state-dir", str(a_file / "below"), "vm", "list"])
    assert_clean_error(result, "state-dir-unusable", 6)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "iovctl.db").write_bytes(b"this is not a database" * 100)
    result = run_in_process(["--state-dir", str(garbage), "vm", "list"])
    assert_clean_error(result, "state-unusable", 6)
    assert (garbage / "iovctl.db").read_bytes() == b"this is not a database" * 100
