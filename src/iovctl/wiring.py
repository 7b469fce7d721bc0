"""Wiring: builds a Context (store + hardware + VM runtime) from options.

The only module that knows every adapter. The backend of a state directory is
fixed when it is first used (``meta.backend``): later commands see the same host.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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
    return _linux(store, options)


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


def _simulated(store: SqliteStore, options: Options) -> Context:
    from iovctl.adapters.sim.host import SimulatedHost
    from iovctl.adapters.sim.runtime import SimulatedVmRuntime
    from iovctl.adapters.sim.spec import load_spec, spec_from_json, spec_to_json

    wanted = load_spec(options.sim) if options.sim is not None else None
    stored = store.get_meta("sim_spec")
    if stored is None:
        fresh = wanted or load_spec("demo")

        def init() -> None:
            SimulatedHost(store.conn, fresh).ensure_schema()
            SimulatedVmRuntime(store.conn).ensure_schema()

        stored = _bind(store, options, "sim", "sim_spec", spec_to_json(fresh), init)
        assert stored is not None
    spec = spec_from_json(stored)
    if wanted is not None and wanted.name != spec.name:
        raise _mismatch(options, "simulated host", spec.name, wanted.name)
    return Context(store, SimulatedHost(store.conn, spec), SimulatedVmRuntime(store.conn))


def _emulated(store: SqliteStore, options: Options) -> Context:
    from iovctl.adapters.netns.nic import EmulatedNic
    from iovctl.adapters.netns.runtime import NetnsVmRuntime
    from iovctl.adapters.netns.spec import emulation_from_json, emulation_to_json, load_emulation

    wanted = load_emulation(options.emulate) if options.emulate is not None else None
    stored = store.get_meta("emulation_spec")
    if stored is None:
        fresh = wanted or load_emulation("veb")
        stored = _bind(store, options, "emulated", "emulation_spec", emulation_to_json(fresh))
        assert stored is not None
    spec = emulation_from_json(stored)
    if wanted is not None and wanted.name != spec.name:
        raise _mismatch(options, "emulation", spec.name, wanted.name)
    hardware = EmulatedNic(spec)
    hardware.ensure()
    runtime = NetnsVmRuntime(lambda switch: store.get_switch(switch).uplink)
    return Context(store, hardware, runtime)


def _linux(store: SqliteStore, options: Options) -> Context:
    """The real host: sysfs + netlink; VMs as network namespaces (libvirt later)."""
    from iovctl.adapters.linux.host import LinuxHost
    from iovctl.adapters.netns.runtime import NetnsVmRuntime

    _bind(store, options, "linux")
    runtime = NetnsVmRuntime(lambda switch: store.get_switch(switch).uplink)
    return Context(store, LinuxHost(), runtime)
