"""Issue 9, items 3 and 4 (parser part): errors as JSON under ``-o json``, ``-o`` is the
output format everywhere (``host snapshot --file``), and what no admin means is refused
without echoing a huge argument back."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import assert_clean_error, run_subprocess, state_dump
from iovctl.errors import TEXT_LIMIT


def _json_error(err: str) -> dict[str, str]:
    doc = json.loads(err)
    assert list(doc) == ["error"]
    assert set(doc["error"]) == {"code", "message", "hint"}
    assert doc["error"]["message"] and doc["error"]["hint"]
    return doc["error"]


@pytest.mark.parametrize(
    ("argv", "code", "exit_code"),
    [
        (("vm", "show", "nosuch"), "unknown-vm", 3),
        (("nic", "add", "vm2", "--switch", "ext", "--vlan", "4095"), "invalid-vlan", 2),
        (("vm", "create", "vm1"), "duplicate-name", 4),
        (("adapter", "set", "enp1s0", "--num-vfs", "99"), "vf-count-out-of-range", 5),
        (("vm", "fly"), "usage", 2),  # a parse error knows -o json too
        (("events", "--limit", "+5"), "invalid-number", 2),
    ],
)
def test_errors_are_json_on_stderr_under_o_json(populated, populated_before, argv, code, exit_code):
    result = populated.run(*argv, "-o", "json")
    assert (result.code, result.out) == (exit_code, "")
    assert _json_error(result.err)["code"] == code
    assert state_dump(populated.state_dir) == populated_before
    # The same error in text: same code, same exit code.
    assert_clean_error(populated.run(*argv), code, exit_code)


def test_output_json_spelled_every_way(populated):
    for spelling in (["-o", "json"], ["--output", "json"], ["--output=json"], ["-ojson"]):
        result = populated.run("vm", "show", "nosuch", *spelling)
        assert _json_error(result.err)["code"] == "unknown-vm", spelling


def test_a_json_error_from_a_real_process(tmp_path):
    result = run_subprocess(
        ["--sim", "demo", "--state-dir", str(tmp_path / "s"), "-o", "json", "vm", "start", "x"]
    )
    assert result.code == 3
    assert _json_error(result.err) == {
        "code": "unknown-vm",
        "message": "VM 'x' does not exist",
        "hint": "list VMs with: iovctl vm list",
    }


def test_host_snapshot_takes_its_file_with_file_and_o_means_format(cli, tmp_path):
    target = tmp_path / "twin.yaml"
    result = cli.run("host", "snapshot", "--file", str(target), "--name", "twin")
    assert result.code == 0, result.err
    doc = yaml.safe_load(target.read_text())
    assert doc["name"] == "twin"
    as_json = cli.ok("host", "snapshot", "--name", "twin")  # -o json: JSON on stdout
    assert as_json["name"] == "twin" and as_json["adapters"] == doc["adapters"]
    # What was written loads back as a host.
    twin = run_subprocess(
        ["--sim", str(target), "--state-dir", str(tmp_path / "t"), "host", "-o", "json"]
    )
    assert json.loads(twin.out)["backend"] == "simulated:twin"
    # -o FILE is no longer a file.
    assert_clean_error(cli.run("host", "snapshot", "-o", str(target)), "usage", 2)


def test_a_snapshot_to_a_directory_is_a_clean_error(cli, tmp_path):
    assert_clean_error(cli.run("host", "snapshot", "--file", str(tmp_path)), "output-path-invalid", 2)


@pytest.mark.parametrize(
    "argv",
    [
        ("vm", "create", "x" * 10_000),
        ("vm", "show", "y" * 10_000),
        ("nic", "add", "vm2", "--switch", "ext", "--mac", "z" * 10_000),
        ("events", "--limit", "9" * 10_000),
        ("nic", "add", "vm2", "--switch", "ext", "--pvlan", "p" * 10_000),
    ],
)
def test_a_huge_argument_is_not_echoed_back_in_full(populated, populated_before, argv):
    result = populated.run(*argv)
    assert result.code == 2 or result.code == 3, result.err
    assert len(result.err) < 2 * TEXT_LIMIT + 100, len(result.err)
    assert "\u2026" in result.err  # cut, visibly
    assert state_dump(populated.state_dir) == populated_before
    as_json = _json_error(populated.run(*argv, "-o", "json").err)
    assert len(as_json["message"]) <= TEXT_LIMIT


def test_sim_and_emulate_in_the_environment_contradict(cli, monkeypatch):
    cli.ok("vm", "list")
    monkeypatch.setenv("IOVCTL_SIM", "demo")
    monkeypatch.setenv("IOVCTL_EMULATE", "veb")
    result = cli.run("vm", "list")  # the state dir exists: no --sim from the fixture
    assert_clean_error(result, "conflicting-options", 2)


def test_an_interrupt_and_a_bug_are_json_too(populated, populated_before, monkeypatch):
    from iovctl.services import allocation, vms

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(allocation, "grant_vf", interrupted)
    result = populated.run("vm", "start", "vm2", "-o", "json")
    assert result.code == 130
    assert _json_error(result.err)["code"] == "interrupted"
    assert "nothing was changed" in json.loads(result.err)["error"]["message"]

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(vms, "list_vms", broken)
    monkeypatch.delenv("IOVCTL_DEBUG", raising=False)
    result = populated.run("vm", "list", "-o", "json")
    assert result.code == 70
    assert _json_error(result.err) == {
        "code": "internal",
        "message": "RuntimeError: a bug",
        "hint": "this is a bug in iovctl; rerun with IOVCTL_DEBUG=1 and report the traceback",
    }
    monkeypatch.undo()
    assert state_dump(populated.state_dir) == populated_before
