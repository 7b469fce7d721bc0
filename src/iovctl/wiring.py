"""Wiring: builds a Context (store + hardware + VM runtime) from options.

The only module that knows every adapter. The backend of a state directory is
fixed when it is first used (``meta.backend``): later commands see the same host.
Adapters are imported when their backend is chosen, never at module import.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from iovctl.adapters.sqlite.store import SqliteStore, default_state_dir
from iovctl.domain.model import NicConfig, VirtualFunction
from iovctl.domain.text import shown
from iovctl.domain.validation import conflicting
from iovctl.errors import StateError
from iovctl.services.context import Context

if TYPE_CHECKING:
    import ipaddress

    from iovctl.adapters.netns.runtime import NetnsVmRuntime
    from iovctl.adapters.netns.spec import EmulationSpec
    from iovctl.domain.host_spec import HostSpec


@dataclass(frozen=True)
class Options:
    state_dir: Path | None = None
    #: Simulated host spec (built-in name or YAML path); None = what the state dir holds.
    sim: str | None = None
    #: Emulated SR-IOV host made of kernel devices (built-in name or YAML path). Root.
    emulate: str | None = None
    #: Keep the store in memory (tests, benchmarks): nothing persists.
    in_memory: bool = False


def resolve_options(state_dir: str | None, sim: str | None, emulate: str | None = None) -> Options:
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
    return Options(state_dir=chosen, sim=sim, emulate=emulate)


def open_context(options: Options) -> Context:
    """Open the state store and the backend it is bound to.

    The specs named by ``--sim``/``--emulate`` are read first: a bad one is refused
    before the state directory is created or touched.
    """
    wanted = _Wanted(
        sim=_load_sim(options.sim) if options.sim is not None else None,
        emulation=_load_emulation(options.emulate) if options.emulate is not None else None,
    )
    store = SqliteStore.open(None if options.in_memory else options.state_dir)
    try:
        backend = store.get_meta("backend")
        if options.emulate is not None or backend == "emulated":
            return _emulated(store, options, wanted.emulation)
        if options.sim is not None or backend == "sim":
            return _simulated(store, options, wanted.sim)
        if backend is None and not Path("/sys/bus/pci/devices").is_dir():
            # No PCI bus to drive (a container, another OS): the simulated demo host.
            return _simulated(store, options, None)
        return _linux(store, options)
    except BaseException:
        store.close()
        raise


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
        "use another --state-dir (or IOVCTL_STATE_DIR) for another host",
    )


def _simulated(store: SqliteStore, options: Options, wanted: HostSpec | None) -> Context:
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
    host, runtime = simulated_machine(spec, None if options.in_memory else options.state_dir)
    return Context(store, host, runtime)


def _emulated(store: SqliteStore, options: Options, wanted: EmulationSpec | None) -> Context:
    from iovctl.adapters.netns.nic import EmulatedNic
    from iovctl.adapters.netns.runtime import NetnsVmRuntime
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
    # Eager, unlike _linux: EmulatedNic has already loaded the netlink layer, so
    # laziness would save ~4 ms, and bench.datapath and tests/privileged use this
    # runtime as a NetnsVmRuntime (isinstance, ``address``).
    runtime = NetnsVmRuntime(lambda switch: store.get_switch(switch).uplink)
    return Context(store, hardware, runtime)


def _linux(store: SqliteStore, options: Options) -> Context:
    """The real host: sysfs + netlink; VMs as network namespaces (libvirt later)."""
    from iovctl.adapters.linux.host import LinuxHost

    _bind(store, options, "linux")
    return Context(store, LinuxHost(), LazyNetnsVmRuntime(store))


class LazyNetnsVmRuntime:
    """``VmRuntime`` that imports and builds ``NetnsVmRuntime`` on its first call.

    Most commands (every read, and writes such as ``switch create``) never touch
    a VM, so they skip importing the namespace runtime. Only the methods of the
    ``VmRuntime`` port are forwarded; code that needs more of ``NetnsVmRuntime``
    wires it directly.
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._runtime: NetnsVmRuntime | None = None

    def _built(self) -> NetnsVmRuntime:
        if self._runtime is None:
            from iovctl.adapters.netns.runtime import NetnsVmRuntime

            store = self._store
            self._runtime = NetnsVmRuntime(lambda switch: store.get_switch(switch).uplink)
        return self._runtime

    def close(self) -> None:
        """Release the runtime's netlink sockets; nothing to do if it was never built."""
        if self._runtime is not None:
            self._runtime.close()

    def start_vm(self, vm: str) -> None:
        self._built().start_vm(vm)

    def stop_vm(self, vm: str) -> None:
        self._built().stop_vm(vm)

    def is_running(self, vm: str) -> bool:
        return self._built().is_running(vm)

    def plug_software_nic(self, vm: str, nic: str, config: NicConfig) -> None:
        self._built().plug_software_nic(vm, nic, config)

    def unplug_nic(self, vm: str, nic: str) -> None:
        self._built().unplug_nic(vm, nic)

    def reconcile(self, off_vms: Iterable[str]) -> list[str]:
        return self._built().reconcile(off_vms)

    def remove_switch(self, switch: str) -> None:
        self._built().remove_switch(switch)

    def attach_vf(self, vm: str, nic: str, vf: VirtualFunction) -> None:
        self._built().attach_vf(vm, nic, vf)

    def detach_vf(self, vm: str, nic: str, vf: VirtualFunction) -> None:
        self._built().detach_vf(vm, nic, vf)

    def vf_data_path_active(self, vm: str, nic: str) -> bool:
        return self._built().vf_data_path_active(vm, nic)

    def address(self, vm: str, nic: str, config: NicConfig) -> ipaddress.IPv4Interface | None:
        """The IPv4 identity of a NIC (not in the port: namespaces only; the bench)."""
        return self._built().address(vm, nic, config)
