"""Side-effect steps: what a command intends to do to the machine, as data.

A command plans under the store's write lock and records its steps in the
operation journal (the intent) before the first one runs; each step's completion
is recorded after it ran. Every step is idempotent (``ensure`` semantics), so a
process killed anywhere is finished by running its pending steps again.

Steps come in two kinds (``Step.kind``):

- ``grant``: giving something (a VF, a VM start, a software NIC, a VF count).
  When the machine refuses, the intent is abandoned and the store is made to say
  what the machine did (the NIC waits with the reason, the VM stays off).
- ``release``: taking something away (detach, scrub, stop, unplug). These must
  happen eventually: a refused release is retried by the next command or by
  ``iovctl apply``; until then the VF it concerns goes to nobody.

``touches()`` names the objects a step touches; two operations whose keys meet run one
after the other. Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Literal

from iovctl.domain.model import (
    LinkState,
    NicConfig,
    PrivateVlan,
    PvlanMode,
    VfSettings,
    VlanProtocol,
    VmTemplate,
)

StepKind = Literal["grant", "release"]


def vm_key(vm: str) -> str:
    return f"vm:{vm}"


def vf_key(adapter: str, index: int) -> str:
    return f"vf:{adapter}/{index}"


def adapter_key(adapter: str) -> str:
    """Every VF of the adapter at once (a VF count change)."""
    return f"vf:{adapter}/*"


def switch_key(switch: str) -> str:
    return f"switch:{switch}"


def keys_meet(a: str, b: str) -> bool:
    """Same object, or an adapter-wide key and one of that adapter's VFs."""
    if a == b:
        return True
    if a.endswith("/*") and b.startswith(a[:-1]):
        return True
    return b.endswith("/*") and a.startswith(b[:-1])


@dataclass(frozen=True)
class Step:
    """Base of every step; subclasses are frozen dataclasses of plain fields."""

    kind: ClassVar[StepKind] = "grant"
    name: ClassVar[str] = ""

    def touches(self) -> frozenset[str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class StartVm(Step):
    name: ClassVar[str] = "start-vm"
    vm: str

    def touches(self) -> frozenset[str]:
        return frozenset({vm_key(self.vm)})

    def describe(self) -> str:
        return f"start VM {self.vm}"


@dataclass(frozen=True)
class StopVm(Step):
    kind: ClassVar[StepKind] = "release"
    name: ClassVar[str] = "stop-vm"
    vm: str

    def touches(self) -> frozenset[str]:
        return frozenset({vm_key(self.vm)})

    def describe(self) -> str:
        return f"stop VM {self.vm}"


@dataclass(frozen=True)
class DefineVm(Step):
    """The hypervisor's VM for a new iovctl VM (``vm create``); refused: the VM
    record goes again."""

    name: ClassVar[str] = "define-vm"
    vm: str
    template: VmTemplate = field(default_factory=VmTemplate)

    def touches(self) -> frozenset[str]:
        return frozenset({vm_key(self.vm)})

    def describe(self) -> str:
        return f"define VM {self.vm} in the hypervisor"


@dataclass(frozen=True)
class AdoptVm(Step):
    """Take over the hypervisor's existing VM (``vm import``); refused: the VM
    record goes again, with the hypervisor's reason."""

    name: ClassVar[str] = "adopt-vm"
    vm: str

    def touches(self) -> frozenset[str]:
        return frozenset({vm_key(self.vm)})

    def describe(self) -> str:
        return f"take over the hypervisor's VM {self.vm}"


@dataclass(frozen=True)
class ForgetVm(Step):
    """Let go of the VM (``vm delete``): defined ones are removed from the
    hypervisor, adopted ones lose only what iovctl added."""

    kind: ClassVar[StepKind] = "release"
    name: ClassVar[str] = "forget-vm"
    vm: str

    def touches(self) -> frozenset[str]:
        return frozenset({vm_key(self.vm)})

    def describe(self) -> str:
        return f"let go of VM {self.vm} in the hypervisor"


@dataclass(frozen=True)
class PlugNic(Step):
    """The software half of a NIC, with ``config``; ``previous`` is what a failed
    ``nic set`` goes back to (None for a new plug)."""

    name: ClassVar[str] = "plug-nic"
    vm: str
    nic: str
    nic_id: int
    config: NicConfig
    previous: NicConfig | None = None

    def touches(self) -> frozenset[str]:
        return frozenset({vm_key(self.vm)})

    def describe(self) -> str:
        return f"plug the software half of {self.vm}/{self.nic} into {self.config.switch}"


@dataclass(frozen=True)
class UnplugNic(Step):
    kind: ClassVar[StepKind] = "release"
    name: ClassVar[str] = "unplug-nic"
    vm: str
    nic: str

    def touches(self) -> frozenset[str]:
        return frozenset({vm_key(self.vm)})

    def describe(self) -> str:
        return f"unplug {self.vm}/{self.nic}"


@dataclass(frozen=True)
class RemoveSwitch(Step):
    kind: ClassVar[StepKind] = "release"
    name: ClassVar[str] = "remove-switch"
    switch: str

    def touches(self) -> frozenset[str]:
        return frozenset({switch_key(self.switch)})

    def describe(self) -> str:
        return f"remove the software path of switch {self.switch}"


@dataclass(frozen=True)
class SetNumVfs(Step):
    name: ClassVar[str] = "set-num-vfs"
    adapter: str
    count: int
    #: The count to go back to when this one is refused (0: none).
    restore: int = 0

    def touches(self) -> frozenset[str]:
        return frozenset({adapter_key(self.adapter)})

    def describe(self) -> str:
        return f"set the VF count of {self.adapter} to {self.count}"


@dataclass(frozen=True)
class ConfigureVf(Step):
    """Write a tenant's settings to a VF (before attaching it, or in place)."""

    name: ClassVar[str] = "configure-vf"
    adapter: str
    index: int
    vm: str
    nic: str
    nic_id: int
    settings: VfSettings

    def touches(self) -> frozenset[str]:
        return frozenset({vf_key(self.adapter, self.index), vm_key(self.vm)})

    def describe(self) -> str:
        return f"configure VF {self.index} of {self.adapter} for {self.vm}/{self.nic}"


@dataclass(frozen=True)
class AttachVf(Step):
    name: ClassVar[str] = "attach-vf"
    adapter: str
    index: int
    vm: str
    nic: str
    nic_id: int

    def touches(self) -> frozenset[str]:
        return frozenset({vf_key(self.adapter, self.index), vm_key(self.vm)})

    def describe(self) -> str:
        return f"attach VF {self.index} of {self.adapter} to {self.vm}/{self.nic}"


@dataclass(frozen=True)
class DetachVf(Step):
    kind: ClassVar[StepKind] = "release"
    name: ClassVar[str] = "detach-vf"
    adapter: str
    index: int
    vm: str
    nic: str
    #: Known even when the VF itself is gone (its PF was reset underneath).
    pci_address: str = ""

    def touches(self) -> frozenset[str]:
        return frozenset({vf_key(self.adapter, self.index), vm_key(self.vm)})

    def describe(self) -> str:
        return f"detach VF {self.index} of {self.adapter} from {self.vm}/{self.nic}"


@dataclass(frozen=True)
class ScrubVf(Step):
    """Power-on defaults on a released VF; it is free only once this is done.

    ``vm`` is the VM it came from (None: not in a VM), so that the scrub waits for
    that VM's stop or detach."""

    kind: ClassVar[StepKind] = "release"
    name: ClassVar[str] = "scrub-vf"
    adapter: str
    index: int
    vm: str | None = None

    def touches(self) -> frozenset[str]:
        out = {vf_key(self.adapter, self.index)}
        if self.vm is not None:
            out.add(vm_key(self.vm))
        return frozenset(out)

    def describe(self) -> str:
        return f"scrub VF {self.index} of {self.adapter}"


STEP_TYPES: dict[str, type[Step]] = {
    t.name: t
    for t in (
        DefineVm,
        AdoptVm,
        ForgetVm,
        StartVm,
        StopVm,
        PlugNic,
        UnplugNic,
        RemoveSwitch,
        SetNumVfs,
        ConfigureVf,
        AttachVf,
        DetachVf,
        ScrubVf,
    )
}


@dataclass(frozen=True)
class JournalStep:
    """A step as the journal holds it: ``state`` pending, done, failed or cancelled."""

    op: int
    seq: int
    step: Step
    state: str = "pending"
    error: str | None = None


@dataclass(frozen=True)
class OperationRecord:
    """An unfinished operation: ``state`` running or stalled (a release was refused)."""

    id: int
    command: str
    owner: str
    state: str
    error: str | None = None


# -- JSON codec ---------------------------------------------------------------


def step_to_json(step: Step) -> str:
    return json.dumps({"type": step.name, **_plain(step)})


_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """Dataclasses as dicts (``dataclasses.asdict`` deep-copies: 4x slower)."""
    cls = type(value)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in fields(value)) if is_dataclass(value) else ()
    if not names:
        return value
    return {name: _plain(getattr(value, name)) for name in names}


def step_from_json(text: str) -> Step:
    data = json.loads(text)
    cls = STEP_TYPES[data.pop("type")]
    for key in ("config", "previous"):
        if data.get(key) is not None:
            data[key] = _config(data[key])
    if data.get("settings") is not None:
        data["settings"] = _settings(data["settings"])
    if data.get("template") is not None:
        data["template"] = VmTemplate(**data["template"])
    return cls(**data)


def _pvlan(p: dict[str, Any] | None) -> PrivateVlan | None:
    if not p:
        return None
    return PrivateVlan(PvlanMode(p["mode"]), p["primary_vlan"], p.get("secondary_vlan"))


def _config(d: dict[str, Any]) -> NicConfig:
    return NicConfig(**{**d, "pvlan": _pvlan(d.get("pvlan"))})


def _settings(d: dict[str, Any]) -> VfSettings:
    return VfSettings(
        **{
            **d,
            "vlan_protocol": VlanProtocol(d["vlan_protocol"]),
            "link_state": LinkState(d["link_state"]),
            "pvlan": _pvlan(d.get("pvlan")),
        }
    )
