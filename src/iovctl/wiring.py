"""Wiring: builds a Context (store + hardware + VM runtime) from options.

The only module that knows every adapter. Two choices, made apart: the hardware
(``sim``, ``linux``, ``emulated``) and the VM runtime (``sim``, ``netns``,
``libvirt``). Each is fixed when a state directory is first used (``meta.backend``,
``meta.runtime``, and ``meta.libvirt_uri`` for libvirt): later commands see the same
host and the same VMs. The runtime
defaults to the hardware's natural partner: simulated VMs on a simulated host,
namespaces on real and emulated hosts. Adapters are imported when chosen, never at
module import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from iovctl.adapters.sqlite.store import SqliteStore, default_state_dir
from iovctl.domain.drivers import VfDriver
from iovctl.domain.model import RuntimeFacts
from iovctl.domain.text import shown
from iovctl.domain.validation import conflicting
from iovctl.errors import InvalidInput, StateError
from iovctl.ports import HostHardware, VmRuntime
from iovctl.ports.traffic_lab import TrafficLab
from iovctl.services.context import Context

if TYPE_CHECKING:
    from iovctl.adapters.netns.spec import EmulationSpec
    from iovctl.domain.host_spec import HostSpec

#: The VM runtimes, by name.
RUNTIMES = ("sim", "netns", "libvirt")
#: Where the libvirt runtime finds libvirt unless told (IOVCTL_LIBVIRT_URI).
DEFAULT_LIBVIRT_URI = "qemu:///system"
#: libvirt domain types iovctl may define VMs as: ``kvm``, or ``qemu`` (TCG) where
#: /dev/kvm cannot run guests (IOVCTL_LIBVIRT_DOMAIN_TYPE; default: kvm if offered).
DOMAIN_TYPES = ("kvm", "qemu")


@dataclass(frozen=True)
class Options:
    state_dir: Path | None = None
    #: Simulated host spec (built-in name or YAML path); None = what the state dir holds.
    sim: str | None = None
    #: Emulated SR-IOV host made of kernel devices (built-in name or YAML path). Root.
    emulate: str | None = None
    #: Keep the store in memory (tests, benchmarks): nothing persists.
    in_memory: bool = False
    #: VM runtime (one of RUNTIMES); None = what the state dir holds, else the
    #: hardware's partner.
    runtime: str | None = None
    #: libvirt connection URI; None = what the state dir holds, else the default.
    libvirt_uri: str | None = None


def resolve_options(
    state_dir: str | None,
    sim: str | None,
    emulate: str | None = None,
    runtime: str | None = None,
    libvirt_uri: str | None = None,
) -> Options:
    """Options from flags, then the environment, then the defaults. ``sim`` and
    ``emulate`` are two kinds of host: both given (as flags, or both in the
    environment) is refused. A flag wins over the environment's other kind.

    Raises StateError(``state-unusable``) for an empty ``--state-dir`` (which must not
    quietly mean the default directory).
    """
    if sim is not None and emulate is not None:
        raise conflicting("--sim", "--emulate", "a simulated host or an emulated one")
    if state_dir is not None and not state_dir.strip():
        raise StateError(
            "state-unusable",
            "--state-dir is empty",
            "give the state directory's path, or leave --state-dir out for the default",
        )
    env_dir = os.environ.get("IOVCTL_STATE_DIR")
    chosen = Path(state_dir) if state_dir else Path(env_dir) if env_dir else default_state_dir()
    if sim is None and emulate is None:
        sim = os.environ.get("IOVCTL_SIM") or None
        emulate = os.environ.get("IOVCTL_EMULATE") or None
        if sim is not None and emulate is not None:
            raise conflicting("IOVCTL_SIM", "IOVCTL_EMULATE", "unset one of them")
    runtime = runtime or os.environ.get("IOVCTL_RUNTIME") or None
    libvirt_uri = libvirt_uri or os.environ.get("IOVCTL_LIBVIRT_URI") or None
    return Options(
        state_dir=chosen, sim=sim, emulate=emulate, runtime=runtime, libvirt_uri=libvirt_uri
    )


def open_context(options: Options) -> Context:
    """Open the state store, the hardware and the VM runtime it is bound to.

    The specs named by ``--sim``/``--emulate`` are read first: a bad one is refused
    before the state directory is created or touched.
    """
    if options.runtime is not None and options.runtime not in RUNTIMES:
        raise InvalidInput(
            "unknown-runtime",
            f"no VM runtime named {shown(options.runtime)!r}",
            f"choose one of: {', '.join(RUNTIMES)} (--runtime or IOVCTL_RUNTIME)",
        )
    wanted = _Wanted(
        sim=_load_sim(options.sim) if options.sim is not None else None,
        emulation=_load_emulation(options.emulate) if options.emulate is not None else None,
    )
    store = SqliteStore.open(None if options.in_memory else options.state_dir)
    try:
        backend = store.get_meta("backend")
        hardware: HostHardware
        if options.emulate is not None or backend == "emulated":
            hardware, partner = _emulated(store, options, wanted.emulation), "netns"
        elif (
            options.sim is not None
            or backend == "sim"
            or (
                # No PCI bus to drive (a container, another OS): the simulated demo host.
                backend is None and not Path("/sys/bus/pci/devices").is_dir()
            )
        ):
            hardware, partner = _simulated(store, options, wanted.sim), "sim"
        else:
            hardware, partner = _linux(store, options), "netns"
        return Context(store, hardware, _runtime(store, options, hardware, partner))
    except BaseException:
        store.close()
        raise


def _runtime(
    store: SqliteStore, options: Options, hardware: HostHardware, partner: str
) -> VmRuntime:
    """The state dir's VM runtime, bound on first use like the hardware."""
    stored = store.get_meta("runtime")
    if stored is None:
        with store.transaction():
            stored = store.get_meta("runtime")
            if stored is None:
                stored = options.runtime or partner
                store.set_meta("runtime", stored)
    if options.runtime is not None and options.runtime != stored:
        raise _mismatch(options, "VM runtime", stored, options.runtime)
    if stored == "sim":
        return _sim_runtime(options, hardware)
    if stored == "libvirt":
        return libvirt_runtime(store, options, hardware)
    return netns_runtime(store)


def _sim_runtime(options: Options, hardware: HostHardware) -> VmRuntime:
    """Simulated VMs, on the simulated machine's database (the host's, when the host
    is simulated too: a power cycle stops its VMs, destroyed VFs leave them)."""
    from iovctl.adapters.sim.host import SimulatedHost
    from iovctl.adapters.sim.machine import mark_powered_on, open_machine, powered_on
    from iovctl.adapters.sim.runtime import SimulatedVmRuntime

    if isinstance(hardware, SimulatedHost):
        return SimulatedVmRuntime(hardware.machine)
    machine = open_machine(None if options.in_memory else options.state_dir)
    runtime = SimulatedVmRuntime(machine)
    if not powered_on(machine):
        runtime.ensure_schema()
        mark_powered_on(machine)
    else:
        runtime.ensure_hypervisor()
    return runtime


def netns_runtime(store: SqliteStore) -> VmRuntime:
    """Namespaces, built on first use: most commands (every read, and writes such as
    ``switch create``) never touch a VM and skip importing pyroute2's runtime."""

    def build() -> VmRuntime:
        from iovctl.adapters.netns.runtime import NetnsVmRuntime

        return NetnsVmRuntime(lambda switch: store.get_switch(switch).uplink)

    # Namespaces are iovctl's own VMs (adapters/own_vms.py): what allocation and
    # power following ask of every runtime is answered without building it.
    return cast(
        VmRuntime,
        Lazy(
            build,
            vf_driver=VfDriver.NET,
            follows_hypervisor=False,
            vfs_held_elsewhere=frozenset,
            power_states=dict,
            lost_vms=lambda vms: frozenset(),
            shut_down_guest=lambda vm, timeout: True,
            facts=lambda: RuntimeFacts(kind="netns"),
            # vm create and vm delete: nothing to define or forget in a namespace
            define_vm=lambda vm, template: None,
            forget_vm=lambda vm: None,
        ),
    )


def libvirt_runtime(store: SqliteStore, options: Options, hardware: HostHardware) -> VmRuntime:
    """libvirt domains, over the URI the state dir was first used with; connected on
    first use (without libvirt-python installed that use says how to install it)."""
    uri = store.get_meta("libvirt_uri")
    if uri is None:
        with store.transaction():
            uri = store.get_meta("libvirt_uri")
            if uri is None:
                uri = options.libvirt_uri or DEFAULT_LIBVIRT_URI
                store.set_meta("libvirt_uri", uri)
    if options.libvirt_uri is not None and options.libvirt_uri != uri:
        raise _mismatch(options, "libvirt URI", uri, options.libvirt_uri)
    domain_type = os.environ.get("IOVCTL_LIBVIRT_DOMAIN_TYPE") or None
    if domain_type is not None and domain_type not in DOMAIN_TYPES:
        raise InvalidInput(
            "unknown-domain-type",
            f"no libvirt domain type named {shown(domain_type)!r}",
            f"choose one of: {', '.join(DOMAIN_TYPES)} (IOVCTL_LIBVIRT_DOMAIN_TYPE)",
        )

    def build() -> VmRuntime:
        from iovctl.adapters.libvirt.runtime import LibvirtVmRuntime

        return LibvirtVmRuntime(
            uri,
            lambda switch: store.get_switch(switch).uplink,
            hardware=hardware,
            domain_type=domain_type,
            console_log_dir="/var/log/libvirt/qemu" if uri == DEFAULT_LIBVIRT_URI else None,
        )

    return cast(VmRuntime, Lazy(build, vf_driver=VfDriver.VFIO, follows_hypervisor=True))


def traffic_lab() -> TrafficLab:
    """The machine around the VMs for ``iovctl bench`` (namespaces: the bench runs
    on the emulated NIC or a real PF, both with the namespace runtime). Root."""
    from iovctl.adapters.netns.traffic_lab import NetnsTrafficLab

    return NetnsTrafficLab()


@dataclass(frozen=True)
class _Wanted:
    """The specs the options name, read and validated before the store is opened."""

    sim: HostSpec | None
    emulation: EmulationSpec | None


def _load_sim(name_or_path: str) -> HostSpec:
    from iovctl.adapters.sim.spec import load_spec

    return load_spec(name_or_path)


def _load_emulation(name_or_path: str) -> EmulationSpec:
    from iovctl.adapters.netns.spec import load_emulation

    return load_emulation(name_or_path)


def _spec_changed(options: Options, kind: str, path: str) -> StateError:
    return StateError(
        "spec-changed",
        f"{kind} {shown(path)} changed since state directory {shown(str(options.state_dir))}"
        " was first used with it; the directory keeps the host it was created with",
        f"leave out --{'sim' if kind == 'host spec' else 'emulate'} to use the stored host,"
        " or give a new --state-dir to start over from the edited file",
    )


def _bind(
    store: SqliteStore,
    options: Options,
    backend: str,
    key: str | None = None,
    value: str | None = None,
    init: Callable[[], None] | None = None,
) -> str | None:
    """Bind a fresh state dir to ``backend`` atomically; return the stored ``key``.

    Two commands may both find the directory unbound; the write lock decides, and
    the loser sees the winner's binding (and is refused if it wanted another host).
    """
    with store.transaction():
        current = store.get_meta("backend")
        if current is None:
            store.set_meta("backend", backend)
            if key is not None and value is not None:
                store.set_meta(key, value)
            if init is not None:
                init()
            return value
        if current != backend:
            raise StateError(
                "state-backend-mismatch",
                f"state directory {options.state_dir} is bound to the {current} backend, "
                f"not {backend}",
                "use another --state-dir (or IOVCTL_STATE_DIR) for another host",
            )
        return store.get_meta(key) if key is not None else None


def _mismatch(options: Options, kind: str, have: str, want: str) -> StateError:
    return StateError(
        "state-backend-mismatch",
        f"state directory {options.state_dir} holds {kind} {have!r}, not {want!r}",
        f"it is fixed when the state directory is first used: leave the option out to use "
        f"{have!r}, or use another --state-dir (or IOVCTL_STATE_DIR) for {want!r}",
    )


def _simulated(store: SqliteStore, options: Options, wanted: HostSpec | None) -> HostHardware:
    from iovctl.adapters.sim import simulated_machine
    from iovctl.adapters.sim.spec import BUILTIN_SPECS, load_spec, spec_from_json, spec_to_json

    stored = store.get_meta("sim_spec")
    if stored is None:
        fresh = wanted or load_spec("demo")
        stored = _bind(store, options, "sim", "sim_spec", spec_to_json(fresh))
        assert stored is not None
    spec = spec_from_json(stored)
    if wanted is not None and wanted.name != spec.name:
        raise _mismatch(options, "simulated host", spec.name, wanted.name)
    # A built-in spec may change with an iovctl upgrade; a file the user edited after
    # the first command would otherwise be silently ignored.
    if wanted is not None and options.sim not in BUILTIN_SPECS and spec_to_json(wanted) != stored:
        raise _spec_changed(options, "host spec", str(options.sim))
    host, _ = simulated_machine(spec, None if options.in_memory else options.state_dir)
    return host


def _emulated(store: SqliteStore, options: Options, wanted: EmulationSpec | None) -> HostHardware:
    from iovctl.adapters.netns.nic import EmulatedNic
    from iovctl.adapters.netns.spec import (
        BUILTIN_EMULATIONS,
        emulation_from_json,
        emulation_to_json,
        load_emulation,
    )

    stored = store.get_meta("emulation_spec")
    if stored is None:
        fresh = wanted or load_emulation("veb")
        stored = _bind(store, options, "emulated", "emulation_spec", emulation_to_json(fresh))
        assert stored is not None
    spec = emulation_from_json(stored)
    if wanted is not None and wanted.name != spec.name:
        raise _mismatch(options, "emulation", spec.name, wanted.name)
    if (
        wanted is not None
        and options.emulate not in BUILTIN_EMULATIONS
        and emulation_to_json(wanted) != stored
    ):
        raise _spec_changed(options, "emulation spec", str(options.emulate))
    hardware = EmulatedNic(spec)
    hardware.ensure()
    return hardware


def _linux(store: SqliteStore, options: Options) -> HostHardware:
    """The real host: sysfs + netlink."""
    from iovctl.adapters.linux.host import LinuxHost

    _bind(store, options, "linux")
    return LinuxHost()


class Lazy:
    """Builds an adapter on first use and forwards every attribute to it.

    Generic: the port's methods are not restated here, so a method added to a port
    needs no change. ``known`` answers attributes that must not build the adapter
    (``vf_driver``); ``close`` closes only what was built.
    """

    def __init__(self, build: Callable[[], object], **known: object) -> None:
        self._build = build
        self._built: object | None = None
        self._known = known

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._known:
            return self._known[name]
        if self._built is None:
            self._built = self._build()
        return getattr(self._built, name)

    def close(self) -> None:
        if self._built is not None:
            cast(Any, self._built).close()
