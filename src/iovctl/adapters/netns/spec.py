"""Emulation specs: which SR-IOV NICs to build from kernel devices, and the world.

Format (YAML, or one of :data:`BUILTIN_EMULATIONS` by name)::

    name: lab                          # required
    world: {netns: iov-world, address: 10.77.0.1/16}
    adapters:                          # required, at least one
      - name: iove0                    # required; up to 11 characters
        total_vfs: 8                   # 1-255, default 8
        mode: veb                      # veb | vepa | isolated (the embedded switch)
        mac: "02:10:00:00:00:01"       # PF MAC, default derived from the index
        link_speed_mbps: 10000

Loading validates everything and raises InvalidInput(``invalid-emulation-spec``).
Pure: must not import pyroute2 or touch the kernel.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from iovctl.adapters.netns.names import MAX_ADAPTER_NAME, WORLD_NETNS
from iovctl.adapters.yaml_file import read_yaml_file
from iovctl.domain.host_spec import MAX_LINK_SPEED_MBPS
from iovctl.domain.text import first_control_character, shown
from iovctl.domain.validation import normalize_mac
from iovctl.errors import InvalidInput


class SwitchMode(enum.StrEnum):
    """How the NIC's embedded switch connects its functions (PF, VFs) and the wire."""

    #: Virtual Ethernet Bridge: VF-to-VF frames are switched inside the NIC.
    VEB = "veb"
    #: Virtual Ethernet Port Aggregator: every frame goes out the wire; the adjacent
    #: switch (the world's bridge, hairpin on) reflects frames between functions.
    VEPA = "vepa"
    #: Private-VLAN isolated: VFs reach the wire and the PF, never each other.
    ISOLATED = "isolated"


@dataclass(frozen=True)
class EmulatedAdapterSpec:
    name: str
    total_vfs: int
    mode: SwitchMode
    mac: str
    link_speed_mbps: int
    #: PCI address shown to users (made up: emulated NICs sit on bus 0xe0 and up).
    pci_address: str


@dataclass(frozen=True)
class EmulationSpec:
    name: str
    adapters: tuple[EmulatedAdapterSpec, ...]
    #: Namespace playing the outside world, with its bridge and address.
    world_netns: str
    world_address: ipaddress.IPv4Interface
    document: dict[str, Any]

    def adapter(self, name: str) -> EmulatedAdapterSpec | None:
        return next((a for a in self.adapters if a.name == name), None)


BUILTIN_EMULATIONS: dict[str, dict[str, Any]] = {
    "veb": {"name": "veb", "adapters": [{"name": "iove0", "mode": "veb"}]},
    "vepa": {"name": "vepa", "adapters": [{"name": "iove0", "mode": "vepa"}]},
    "isolated": {"name": "isolated", "adapters": [{"name": "iove0", "mode": "isolated"}]},
    "trio": {
        "name": "trio",
        "adapters": [
            {"name": "iove0", "mode": "veb"},
            {"name": "iove1", "mode": "vepa"},
            {"name": "iove2", "mode": "isolated"},
        ],
    },
}

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
#: Emulated adapters sit on PCI buses 0xe0 and up (see ``pci_address``): 32 of them.
MAX_EMULATED_ADAPTERS = 32
_SPEC_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
#: A network namespace is a file in /run/netns: a plain file name.
_NETNS_RE = re.compile(r"iov-[A-Za-z0-9_.-]{1,60}")


def _fail(where: str, problem: str) -> InvalidInput:
    return InvalidInput(
        "invalid-emulation-spec",
        f"emulation spec: {where}: {problem}",
        "see the format in the iovctl.adapters.netns.spec docstring",
    )


def _adapter(raw: Any, i: int) -> EmulatedAdapterSpec:
    where = f"adapters[{i}]"
    if not isinstance(raw, dict):
        raise _fail(where, "must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > MAX_ADAPTER_NAME:
        raise _fail(
            f"{where}.name",
            f"must be a letter then letters/digits/_/-, at most {MAX_ADAPTER_NAME} characters,"
            f" not {shown(repr(name))}",
        )
    total = raw.get("total_vfs", 8)
    if not isinstance(total, int) or isinstance(total, bool) or not 1 <= total <= 255:
        raise _fail(f"adapter {name}.total_vfs", f"must be 1-255, not {shown(repr(total))}")
    try:
        mode = SwitchMode(raw.get("mode", "veb"))
    except (ValueError, TypeError) as exc:
        raise _fail(f"adapter {name}.mode", "must be veb, vepa or isolated") from exc
    try:
        mac = normalize_mac(str(raw.get("mac", f"02:10:00:00:{i // 256:02x}:{i % 256 + 1:02x}")))
    except InvalidInput as exc:
        raise _fail(f"adapter {name}.mac", exc.message) from exc
    speed = raw.get("link_speed_mbps", 10000)
    if (
        not isinstance(speed, int)
        or isinstance(speed, bool)
        or not 0 < speed <= MAX_LINK_SPEED_MBPS
    ):
        raise _fail(
            f"adapter {name}.link_speed_mbps",
            f"must be an integer from 1 to {MAX_LINK_SPEED_MBPS}, not {shown(repr(speed))}",
        )
    return EmulatedAdapterSpec(name, total, mode, mac, speed, f"0000:{0xE0 + i:02x}:00.0")


def parse_emulation(doc: Any) -> EmulationSpec:
    """Validate an emulation spec document (parsed YAML/JSON)."""
    if not isinstance(doc, dict):
        raise _fail("document", "must be a mapping")
    hidden = first_control_character(doc)
    if hidden is not None:
        where, char = hidden
        raise _fail(shown(where), f"holds the control character U+{ord(char):04X}")
    name = doc.get("name")
    if name is None or name == "":
        raise _fail("name", "is required")
    if not isinstance(name, str) or not _SPEC_NAME_RE.fullmatch(name):
        raise _fail(
            "name", f"must be 1-64 letters, digits, '_', '.', ':' or '-', not {shown(repr(name))}"
        )
    raw_adapters = doc.get("adapters")
    if not isinstance(raw_adapters, list) or not raw_adapters:
        raise _fail("adapters", "must be a non-empty list")
    if len(raw_adapters) > MAX_EMULATED_ADAPTERS:
        raise _fail("adapters", f"more than {MAX_EMULATED_ADAPTERS}; each one is kernel devices")
    adapters = tuple(_adapter(raw, i) for i, raw in enumerate(raw_adapters))
    for key in ("name", "mac"):
        counts = Counter(getattr(a, key) for a in adapters)
        dupes = sorted(v for v, n in counts.items() if n > 1)
        if dupes:
            raise _fail("adapters", f"duplicate {key}: {', '.join(dupes)}")
    world = doc.get("world") or {}
    if not isinstance(world, dict):
        raise _fail("world", "must be a mapping")
    world_netns = world.get("netns", WORLD_NETNS)
    if not isinstance(world_netns, str) or not _NETNS_RE.fullmatch(world_netns):
        raise _fail(
            "world.netns",
            "must be 'iov-' (cleanup finds it) then letters, digits, '_', '.' or '-',"
            f" not {shown(repr(world_netns))}",
        )
    try:
        address = ipaddress.IPv4Interface(str(world.get("address", "10.77.0.1/16")))
    except ValueError as exc:
        raise _fail("world.address", shown(str(exc))) from exc
    return EmulationSpec(name, adapters, world_netns, address, doc)


def load_emulation(name_or_path: str) -> EmulationSpec:
    """A built-in emulation by name, or a YAML file by path."""
    if name_or_path in BUILTIN_EMULATIONS:
        return parse_emulation(BUILTIN_EMULATIONS[name_or_path])
    doc = read_yaml_file(
        name_or_path,
        code="unknown-emulation-spec",
        kind="emulation spec",
        builtins=BUILTIN_EMULATIONS,
        invalid=_fail,
    )
    return parse_emulation(doc)


def emulation_to_json(spec: EmulationSpec) -> str:
    return json.dumps(spec.document, sort_keys=True)


def emulation_from_json(text: str) -> EmulationSpec:
    return parse_emulation(json.loads(text))
