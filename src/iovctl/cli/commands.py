"""Command handlers: each maps parsed arguments to one service call and a rendering."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iovctl.cli import render
from iovctl.domain.validation import check_event_window
from iovctl.services import adapters, reconcile, switches, vms
from iovctl.services.context import Context
from iovctl.services.views import event_view, host_view
from iovctl.services.vms import NicChanges, make_pvlan
from iovctl.wiring import open_context, resolve_options

Handler = Callable[[Context, argparse.Namespace], Any]


def _nic_changes(a: argparse.Namespace, *, for_set: bool) -> NicChanges:
    pvlan = None
    if a.pvlan is not None:
        pvlan = make_pvlan(a.pvlan, a.primary_vlan, a.secondary_vlan)
    elif a.primary_vlan is not None or a.secondary_vlan is not None:
        pvlan = make_pvlan("", a.primary_vlan, a.secondary_vlan)  # raises: mode missing
    vlan = a.vlan
    max_rate = a.max_rate
    if for_set and a.untagged:
        vlan = 0
    if for_set and a.unlimited:
        max_rate = 0
    return NicChanges(
        switch=a.switch if for_set else None,
        mac=a.mac,
        iov_weight=a.iov_weight,
        iov_queue_pairs_requested=a.iov_queue_pairs,
        vlan=vlan,
        pvlan=pvlan,
        clear_pvlan=bool(for_set and a.no_pvlan),
        max_rate=max_rate,
        allow_mac_spoofing=a.allow_mac_spoofing,
        trust=a.trust,
    )


def _check_vlan_arg(a: argparse.Namespace) -> None:
    # 0 is how `nic set --untagged` is carried; typed by a user it is an error.
    from iovctl.domain.validation import check_rate, check_vlan

    if a.vlan is not None:
        check_vlan(a.vlan)
    if a.max_rate is not None:
        check_rate(a.max_rate)


def _after(action: Callable[[Context, argparse.Namespace], None], show: Handler) -> Handler:
    """A mutating command that then shows the object it changed."""

    def handler(c: Context, a: argparse.Namespace) -> Any:
        action(c, a)
        return show(c, a)

    return handler


def _deleted(kind: str, name: Callable[[argparse.Namespace], str]) -> Handler:
    return lambda c, a: {"deleted": kind, "name": name(a)}


def _nic_add(c: Context, a: argparse.Namespace) -> Any:
    _check_vlan_arg(a)
    return vms.add_nic(c, a.vm, a.switch, a.name, _nic_changes(a, for_set=False))


def _nic_set(c: Context, a: argparse.Namespace) -> Any:
    _check_vlan_arg(a)
    return vms.set_nic(c, a.vm, a.nic, _nic_changes(a, for_set=True))


def _events(c: Context, a: argparse.Namespace) -> Any:
    check_event_window(a.limit, a.since)
    return [event_view(e) for e in c.store.list_events(a.limit, a.since)]


def _done(result: dict[str, str]) -> None:
    render.note(f"{result['deleted']} {result['name']} deleted")


_show_adapter: Handler = lambda c, a: adapters.show_adapter(c, a.name)  # noqa: E731
_show_switch: Handler = lambda c, a: switches.show(c, a.name)  # noqa: E731
_show_vm: Handler = lambda c, a: vms.show_vm(c, a.name)  # noqa: E731


def _snapshot(c: Context, a: argparse.Namespace) -> Any:
    from iovctl.services.snapshot import snapshot

    return snapshot(c, a.name)


def _write_snapshot(doc: dict[str, Any], path: str | None) -> None:
    import yaml

    text = yaml.safe_dump(doc, sort_keys=False)
    if path is None:
        sys.stdout.write(text)
        return
    from iovctl.adapters.output_file import write_output_file

    write_output_file(path, text)
    render.note(f"host spec written to {path} (load it with --sim {path})")


#: (group, verb) -> (handler, writes?, renderer)
COMMANDS: dict[tuple[str, str | None], tuple[Handler, bool, Callable[[Any], None]]] = {
    ("host", None): (lambda c, a: host_view(c), False, render.host),
    ("host", "snapshot"): (_snapshot, False, render.note),
    ("host", "power-cycle"): (
        _after(lambda c, a: reconcile.power_cycle(c), lambda c, a: host_view(c)),
        True,
        render.host,
    ),
    ("apply", None): (
        lambda c, a: reconcile.apply(c, dry_run=a.dry_run),
        True,
        render.apply_report,
    ),
    ("adapter", "list"): (lambda c, a: adapters.list_adapters(c), False, render.adapters),
    ("adapter", "show"): (_show_adapter, False, render.adapter),
    ("adapter", "enable"): (
        _after(lambda c, a: adapters.enable(c, a.name, a.num_vfs), _show_adapter),
        True,
        render.adapter,
    ),
    ("adapter", "disable"): (
        _after(lambda c, a: adapters.disable(c, a.name), _show_adapter),
        True,
        render.adapter,
    ),
    ("adapter", "set"): (
        _after(
            lambda c, a: adapters.set_num_vfs(c, a.name, a.num_vfs, force=a.force), _show_adapter
        ),
        True,
        render.adapter,
    ),
    ("vf", "list"): (lambda c, a: adapters.list_vfs(c, a.adapter), False, render.vfs),
    ("switch", "create"): (
        lambda c, a: switches.create(c, a.name, a.uplink, a.iov),
        True,
        render.switch,
    ),
    ("switch", "list"): (lambda c, a: switches.list_all(c), False, render.switches),
    ("switch", "show"): (_show_switch, False, render.switch),
    ("switch", "set"): (
        _after(lambda c, a: switches.set_iov(c, a.name, a.iov), _show_switch),
        True,
        render.switch,
    ),
    ("switch", "delete"): (
        _after(lambda c, a: switches.delete(c, a.name), _deleted("switch", lambda a: a.name)),
        True,
        _done,
    ),
    ("vm", "create"): (lambda c, a: vms.create_vm(c, a.name), True, render.vm),
    ("vm", "delete"): (
        _after(lambda c, a: vms.delete_vm(c, a.name), _deleted("vm", lambda a: a.name)),
        True,
        _done,
    ),
    ("vm", "list"): (lambda c, a: vms.list_vms(c), False, render.vms),
    ("vm", "show"): (_show_vm, False, render.vm),
    ("vm", "start"): (_after(lambda c, a: vms.start_vm(c, a.name), _show_vm), True, render.vm),
    ("vm", "stop"): (_after(lambda c, a: vms.stop_vm(c, a.name), _show_vm), True, render.vm),
    ("nic", "add"): (_nic_add, True, render.nic),
    ("nic", "set"): (_nic_set, True, render.nic),
    ("nic", "remove"): (
        _after(
            lambda c, a: vms.remove_nic(c, a.vm, a.nic),
            _deleted("nic", lambda a: f"{a.vm}/{a.nic}"),
        ),
        True,
        _done,
    ),
    ("nic", "list"): (lambda c, a: vms.list_nics(c, a.vm), False, render.nics),
    ("nic", "show"): (lambda c, a: vms.show_nic(c, a.vm, a.nic), False, render.nic),
    ("events", None): (
        _events,
        False,
        render.events,
    ),
}


#: Whether the running command's change has been committed (for an interrupt
#: during rendering: the change is saved, and the user must be told so).
COMMITTED = False


def run(args: argparse.Namespace) -> int:
    if args.group == "cleanup":
        from iovctl.adapters.netns.cleanup import cleanup

        report = vars(cleanup())
        if getattr(args, "output", "table") == "json":
            render.as_json(report)
        else:
            render.note(
                f"removed {len(report['namespaces'])} namespaces, {len(report['links'])} links"
                f" and {len(report['nft_chains'])} nftables chains"
            )
        return 0
    if args.group == "install-service":
        return _install_service(args)
    if args.group == "demo":
        from iovctl.cli.demo import run_demo

        return int(run_demo(keep=args.keep))
    if args.group == "bench":
        from iovctl.bench.report import run_datapath

        output = getattr(args, "output", "table")
        return run_datapath(args.vms, args.quick, args.tool, args.json_file, output, args.adapter)
    global COMMITTED
    COMMITTED = False
    handler, writes, renderer = COMMANDS[(args.group, getattr(args, "verb", None))]
    ctx = open_context(resolve_options(args.state_dir, args.sim, args.emulate))
    try:
        with ctx.store.transaction() if writes else ctx.store.snapshot():
            result = handler(ctx, args)
        COMMITTED = writes
    finally:
        ctx.store.close()
    if args.group == "host" and args.verb == "snapshot":
        _write_snapshot(result, args.snapshot_file)
    elif getattr(args, "output", "table") == "json":
        render.as_json(result)
    else:
        renderer(result)
    return 0


def _install_service(args: argparse.Namespace) -> int:
    from iovctl.adapters.systemd import install_unit

    options = resolve_options(args.state_dir, args.sim, args.emulate)
    command = shutil.which("iovctl") or f"{sys.executable} -m iovctl"
    assert options.state_dir is not None
    done = install_unit(
        Path(args.unit_dir), command, options.state_dir.resolve(), enable=not args.no_enable
    )
    if getattr(args, "output", "table") == "json":
        render.as_json(done)
    else:
        state = "written" if done["changed"] else "already up to date"
        render.note(f"{done['unit']} {state}; enabled: {'yes' if done['enabled'] else 'no'}")
    return 0
