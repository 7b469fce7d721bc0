"""Wiring: builds a Context (store + hardware + VM runtime) from options.

The only module that knows every adapter. The backend of a state directory is
fixed when it is first used (``meta.backend``): later commands see the same host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iovctl.adapters.sqlite.store import SqliteStore, default_state_dir
from iovctl.errors import StateError
from iovctl.services.context import Context


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
    env_dir = os.environ.get("IOVCTL_STATE_DIR")
    chosen = Path(state_dir) if state_dir else Path(env_dir) if env_dir else default_state_dir()
    return Options(
        state_dir=chosen,
        sim=sim or os.environ.get("IOVCTL_SIM") or None,
        emulate=emulate or os.environ.get("IOVCTL_EMULATE") or None,
    )


def open_context(options: Options) -> Context:
    """Open the state store and the backend it is bound to."""
    store = SqliteStore.open(None if options.in_memory else options.state_dir)
    backend = store.get_meta("backend")
    if options.emulate is not None or backend == "emulated":
        return _emulated(store, options)
    if options.sim is not None or backend == "sim":
        return _simulated(store, options)
    if backend is None and not Path("/sys/bus/pci/devices").is_dir():
        # No PCI bus to drive (a container, another OS): the simulated demo host.
        return _simulated(store, options)
    return _linux(store)


def _simulated(store: SqliteStore, options: Options) -> Context:
    from iovctl.adapters.sim.host import SimulatedHost
    from iovctl.adapters.sim.runtime import SimulatedVmRuntime
    from iovctl.adapters.sim.spec import load_spec, spec_from_json, spec_to_json

    stored = store.get_meta("sim_spec")
    if stored is not None:
        spec = spec_from_json(stored)
        if options.sim is not None:
            wanted = load_spec(options.sim)
            if wanted.name != spec.name:
                raise StateError(
                    "state-backend-mismatch",
                    f"state directory {options.state_dir} holds simulated host {spec.name!r}, "
                    f"not {wanted.name!r}",
                    "use another --state-dir (or IOVCTL_STATE_DIR) for another host",
                )
    else:
        if store.get_meta("backend") not in (None, "sim"):
            raise StateError(
                "state-backend-mismatch",
                f"state directory {options.state_dir} belongs to the real host",
                "use another --state-dir for a simulated host",
            )
        spec = load_spec(options.sim or "demo")
    hardware = SimulatedHost(store.conn, spec)
    runtime = SimulatedVmRuntime(store.conn)
    if stored is None:
        with store.transaction():
            if store.get_meta("sim_spec") is None:
                store.set_meta("backend", "sim")
                store.set_meta("sim_spec", spec_to_json(spec))
                hardware.ensure_schema()
                runtime.ensure_schema()
    return Context(store, hardware, runtime)


def _emulated(store: SqliteStore, options: Options) -> Context:
    from iovctl.adapters.netns.nic import EmulatedNic
    from iovctl.adapters.netns.runtime import NetnsVmRuntime
    from iovctl.adapters.netns.spec import emulation_from_json, emulation_to_json, load_emulation

    stored = store.get_meta("emulation_spec")
    if stored is None:
        if store.get_meta("backend") not in (None, "emulated"):
            raise StateError(
                "state-backend-mismatch",
                f"state directory {options.state_dir} belongs to another backend",
                "use another --state-dir for an emulated host",
            )
        spec = load_emulation(options.emulate or "veb")
        with store.transaction():
            store.set_meta("backend", "emulated")
            store.set_meta("emulation_spec", emulation_to_json(spec))
    else:
        spec = emulation_from_json(stored)
        if options.emulate is not None and load_emulation(options.emulate).name != spec.name:
            raise StateError(
                "state-backend-mismatch",
                f"state directory {options.state_dir} holds emulation {spec.name!r}",
                "use another --state-dir (or IOVCTL_STATE_DIR)",
            )
    hardware = EmulatedNic(spec)
    hardware.ensure()
    runtime = NetnsVmRuntime(lambda switch: store.get_switch(switch).uplink)
    return Context(store, hardware, runtime)


def _linux(store: SqliteStore) -> Context:
    """The real host: sysfs + netlink; VMs as network namespaces (libvirt later)."""
    from iovctl.adapters.linux.host import LinuxHost
    from iovctl.adapters.netns.runtime import NetnsVmRuntime

    if store.get_meta("backend") is None:
        with store.transaction():
            store.set_meta("backend", "linux")
    runtime = NetnsVmRuntime(lambda switch: store.get_switch(switch).uplink)
    return Context(store, LinuxHost(), runtime)
