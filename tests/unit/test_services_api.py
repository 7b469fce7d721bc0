"""The service layer as a front end other than the CLI would use it (issue 9, item 1).

No argparse: each ``services.api`` function is called with keyword arguments as an
HTTP handler would pass a request body, inside ``services.runner``'s transaction or
snapshot, and must give the CLI's results and the CLI's errors.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from iovctl.domain.model import VmTemplate
from iovctl.errors import Conflict, InvalidInput, IovctlError, NotFound
from iovctl.services import api
from iovctl.services.context import Context
from iovctl.services.runner import run_read, run_write
from iovctl.services.views import to_json
from iovctl.wiring import Options, open_context


@pytest.fixture
def ctx() -> Iterator[Context]:
    context = open_context(Options(sim="demo", in_memory=True))
    yield context
    context.store.close()


def write(ctx: Context, op: Callable[..., Any], **body: Any) -> Any:
    """A write as a front end does it; the result as it would send it (JSON)."""
    return to_json(run_write(ctx, lambda c: op(c, **body)))


def read(ctx: Context, op: Callable[..., Any], **body: Any) -> Any:
    return to_json(run_read(ctx, lambda c: op(c, **body)))


def error(ctx: Context, op: Callable[..., Any], **body: Any) -> IovctlError:
    before = run_read(ctx, lambda c: c.store.list_events(None, 0))
    with pytest.raises(IovctlError) as info:
        write(ctx, op, **body)
    assert run_read(ctx, lambda c: c.store.list_events(None, 0)) == before  # nothing changed
    return info.value


def populate(ctx: Context) -> None:
    write(ctx, api.adapter_enable, name="enp1s0", num_vfs=3)
    write(ctx, api.switch_create, name="ext", uplink="enp1s0", iov=True)
    write(ctx, api.vm_create, name="vm1")
    write(ctx, api.nic_add, vm="vm1", switch="ext", iov_weight=50, vlan=10)


def test_a_whole_story_through_the_api(ctx: Context) -> None:
    assert read(ctx, api.host_show)["iov_support"] is True
    assert {a["name"] for a in read(ctx, api.adapter_list)} >= {"enp1s0", "eno1"}
    populate(ctx)
    assert read(ctx, api.adapter_show, name="enp1s0")["num_vfs"] == 3
    assert len(read(ctx, api.vf_list, adapter="enp1s0")) == 3
    assert [s["name"] for s in read(ctx, api.switch_list)] == ["ext"]
    assert read(ctx, api.switch_show, name="ext")["iov_enabled"] is True
    started = write(ctx, api.vm_start, name="vm1")
    assert started["state"] == "running"
    nic = read(ctx, api.nic_show, vm="vm1", nic="nic0")
    assert nic["virtual_function"]["index"] == 0 and nic["vlan"] == 10
    changed = write(ctx, api.nic_set, vm="vm1", nic="nic0", untagged=True, max_rate=100)
    assert (changed["vlan"], changed["max_rate"]) == (None, 100)
    changed = write(ctx, api.nic_set, vm="vm1", nic="nic0", unlimited=True, trust=True)
    assert (changed["max_rate"], changed["trust"]) == (None, True)
    assert [n["name"] for n in read(ctx, api.nic_list, vm="vm1")] == ["nic0"]
    assert read(ctx, api.vm_show, name="vm1")["network_adapters"][0]["name"] == "nic0"
    assert [v["name"] for v in read(ctx, api.vm_list)] == ["vm1"]
    assert write(ctx, api.vm_stop, name="vm1")["state"] == "off"
    assert write(ctx, api.switch_set, name="ext", iov=True)["name"] == "ext"
    assert write(ctx, api.nic_remove, vm="vm1", nic="nic0") == {
        "deleted": "nic",
        "name": "vm1/nic0",
    }
    assert write(ctx, api.vm_delete, name="vm1") == {"deleted": "vm", "name": "vm1"}
    assert write(ctx, api.switch_delete, name="ext") == {"deleted": "switch", "name": "ext"}
    assert write(ctx, api.adapter_set, name="enp1s0", num_vfs=2)["num_vfs"] == 2
    assert write(ctx, api.adapter_disable, name="enp1s0")["num_vfs"] == 0
    assert write(ctx, api.apply, dry_run=True)["dry_run"] is True
    assert write(ctx, api.host_power_cycle)["backend"] == "simulated:demo"
    assert read(ctx, api.host_snapshot, name="twin")["name"] == "twin"
    codes = [e["code"] for e in read(ctx, api.events)]
    assert codes[:3] == ["adapter-vfs-changed", "switch-created", "vm-created"]
    assert read(ctx, api.events, limit=1)[0]["code"] == "host-power-cycled"
    assert [e["code"] for e in read(ctx, api.events, level="warning")] == ["host-power-cycled"]
    assert {e["object_name"] for e in read(ctx, api.events, object_name="vm1")} == {
        "vm1",
        "vm1/nic0",
    }
    assert {e["object_kind"] for e in read(ctx, api.events, kind="switch")} == {"switch"}
    assert read(ctx, api.newest_event) == read(ctx, api.events)[-1]["seq"]


@pytest.mark.parametrize(
    ("op", "body", "family", "code"),
    [
        # What a JSON body can hold that a CLI parser never hands over.
        (api.nic_add, {"vlan": True}, InvalidInput, "invalid-number"),
        (api.nic_add, {"vlan": "10"}, InvalidInput, "invalid-number"),
        (api.nic_add, {"iov_weight": 5.0}, InvalidInput, "invalid-number"),
        (api.adapter_set, {"name": "enp1s0", "num_vfs": "2"}, InvalidInput, "invalid-number"),
        (api.events, {"limit": False}, InvalidInput, "invalid-number"),
        # The CLI's checks, now the service's.
        (api.nic_add, {"vlan": 0}, InvalidInput, "invalid-vlan"),
        (api.nic_add, {"max_rate": 0}, InvalidInput, "invalid-rate"),
        (api.nic_add, {"primary_vlan": 5}, InvalidInput, "invalid-pvlan"),
        (api.nic_add, {"pvlan": "isolated", "primary_vlan": 5}, InvalidInput, "invalid-pvlan"),
        (api.nic_add, {"pvlan": "private", "primary_vlan": 5}, InvalidInput, "invalid-pvlan"),
        (
            api.nic_set,
            {"nic": "nic0", "vlan": 5, "untagged": True},
            InvalidInput,
            "conflicting-options",
        ),
        (
            api.nic_set,
            {"nic": "nic0", "max_rate": 5, "unlimited": True},
            InvalidInput,
            "conflicting-options",
        ),
        (
            api.nic_set,
            {"nic": "nic0", "pvlan": "promiscuous", "primary_vlan": 5, "no_pvlan": True},
            InvalidInput,
            "conflicting-options",
        ),
        (api.events, {"limit": 0}, InvalidInput, "invalid-limit"),
        (api.events, {"level": "fatal"}, InvalidInput, "invalid-level"),
        (api.events, {"kind": "planet"}, InvalidInput, "invalid-kind"),
        (api.vm_create, {"name": "a/b"}, InvalidInput, "invalid-name"),
        (api.vm_show, {"name": "nosuch"}, NotFound, "unknown-vm"),
        (api.vm_create, {"name": "vm1"}, Conflict, "duplicate-name"),
        (api.vm_create, {"name": "v", "memory": 1024}, InvalidInput, "template-no-boot"),
        (api.vm_create, {"name": "v", "disk": "/no/such.img"}, InvalidInput, "input-file-invalid"),
        (api.vm_create, {"name": "v", "disk": "/"}, InvalidInput, "input-file-invalid"),
        (api.vm_create, {"name": "v", "initrd": "/x"}, InvalidInput, "template-needs-kernel"),
        (
            api.vm_create,
            {"name": "v", "disk": "/x", "kernel": "/y"},
            InvalidInput,
            "conflicting-options",
        ),
        (
            api.vm_create,
            {"name": "v", "vcpus": 0, "kernel": "/y"},
            InvalidInput,
            "template-out-of-range",
        ),
        (
            api.vm_create,
            {"name": "v", "memory": "512", "disk": "/x"},
            InvalidInput,
            "invalid-number",
        ),
        (api.vm_create, {"name": "v", "vcpus": True, "disk": "/x"}, InvalidInput, "invalid-number"),
        (api.vm_create, {"name": "v", "disk": 0}, InvalidInput, "invalid-template"),
        (
            api.vm_create,
            {"name": "v", "kernel": "/x", "cmdline": ["a"]},
            InvalidInput,
            "invalid-template",
        ),
        (api.vm_import, {"name": "nosuch"}, NotFound, "unknown-domain"),
        (api.vm_import, {"name": 5}, InvalidInput, "invalid-name"),
        (api.vm_import, {"name": "vm1"}, Conflict, "duplicate-name"),
        (api.vm_import, {"name": "a b"}, InvalidInput, "invalid-name"),
    ],
)
def test_the_api_refuses_what_the_cli_refuses(
    ctx: Context, op: Callable[..., Any], body: dict[str, Any], family: type, code: str
) -> None:
    populate(ctx)
    params = inspect.signature(op).parameters
    if "vm" in params:
        body = (
            {"vm": "vm1", "switch": "ext", **body} if "switch" in params else {"vm": "vm1", **body}
        )
    vms = read(ctx, api.vm_list)
    exc = error(ctx, op, **body)
    assert isinstance(exc, family) and exc.code == code, exc
    assert exc.message and exc.hint
    assert read(ctx, api.vm_list) == vms


def test_an_imported_vm_keeps_its_power_state_and_forgets_cleanly(ctx: Context) -> None:
    from iovctl.adapters.sim.runtime import define_domain, start_domain

    machine = ctx.hardware.machine  # type: ignore[attr-defined]
    define_domain(machine, "web")
    start_domain(machine, "web")
    populate(ctx)
    write(ctx, api.nic_add, vm="vm1", switch="ext", iov_weight=10)
    shown = write(ctx, api.vm_import, name="web")
    assert shown["state"] == "running"
    write(ctx, api.nic_add, vm="web", switch="ext", iov_weight=50)
    assert read(ctx, api.nic_show, vm="web", nic="nic0")["virtual_function"]["index"] == 0
    assert ctx.runtime.power_states() == {"web": True}
    codes = [e["code"] for e in read(ctx, api.events, object_name="web")]
    assert codes[:2] == ["vm-imported", "vm-started"]
    write(ctx, api.vm_stop, name="web")
    assert write(ctx, api.vm_delete, name="web") == {"deleted": "vm", "name": "web"}
    assert ctx.runtime.power_states() == {}  # forgotten, yet still defined:
    with pytest.raises(Conflict):
        ctx.runtime.define_vm("web", VmTemplate())


def test_every_cli_command_is_an_api_call_with_the_same_argument_names() -> None:
    """What makes "the same function with the same arguments" hold: each command's
    options are passed by name to its service (cli.commands is data, not code)."""
    from iovctl.cli.commands import COMMANDS

    for command in COMMANDS:
        if command.call is None:
            continue
        assert command.call.__module__ == "iovctl.services.api", command.name
        params = inspect.signature(command.call).parameters
        given = {a.dest for a in command.args if a.to_service}
        assert given <= set(params), (command.name, given - set(params))
        required = {n for n, p in params.items() if p.default is p.empty} - {"ctx"}
        assert required <= given, (command.name, required - given)


def test_metrics_read_the_store_against_a_hardware_sample(ctx: Context) -> None:
    populate(ctx)
    sample = run_read(ctx, api.metrics_sample)
    assert [a.name for a in sample.adapters] == [a["name"] for a in read(ctx, api.adapter_list)]
    assert sorted(sample.stats["enp1s0"]) == [0, 1, 2]
    write(ctx, api.vm_create, name="vm2")  # the store moves on; the sample stays
    view = run_read(ctx, lambda c: api.metrics(c, sample))
    assert [to_json(s) for s in view.switches] == read(ctx, api.switch_list)
    assert [to_json(n) for n in view.nics] == read(ctx, api.nic_list)
    assert view.events[("vm-created", "info")] == 2
    assert [(t.adapter, t.index, t.vm) for t in view.vf_traffic] == [
        ("enp1s0", 0, None),
        ("enp1s0", 1, None),
        ("enp1s0", 2, None),
    ]


def test_every_api_function_is_called_in_this_file() -> None:
    public = {
        name
        for name, fn in vars(api).items()
        if inspect.isfunction(fn) and fn.__module__ == api.__name__ and not name.startswith("_")
    }
    source = Path(__file__).read_text()
    called = set(re.findall(r"\bapi\.(\w+)\b", source))
    assert public - {"check_level"} <= called, public - called
