"""Host specs: the YAML that describes a simulated machine.

Format (every key optional unless noted; see specs/demo.yaml)::

    name: demo                       # required
    description: free text
    cpu: {vendor: intel, virtualization: true, slat: true, hypervisor: false}
    iommu: {present: true, enabled: true, dma_remapping: true, interrupt_remapping: true}
    firmware: {sriov_enabled: true, pcie_native_control: true, acs: true}
    # interrupt_remapping, the firmware facts and kernel.pci_iov may be null: what a
    # real host could not check (unverified). cpu.hypervisor: the host is a VM.
    kernel: {pci_iov: true, vfio_pci: true, cmdline: "intel_iommu=on iommu=pt"}
    adapters:                        # required, at least one
      - name: enp1s0                 # required
        pci_address: "0000:01:00.0"  # required
        vendor_id: "8086"
        device_id: "10c9"
        driver: igb                  # null = no PF driver bound
        model: "82576 Gigabit Network Connection"
        link_speed_mbps: 1000        # null = unknown (no link); at most 1,600,000
        numa_node: 0
        mac: "52:54:00:aa:00:01"
        sriov:                       # absent = not SR-IOV capable
          total_vfs: 7               # required in the block
          queue_pairs: 8
          max_queue_pairs_per_vf: 1
          vf_driver: igbvf
          vf_device_id: "10ca"
          vf_offset: 128             # routing-id offset and stride of VF 0 (PCIe SR-IOV cap):
          vf_stride: 2               #   both >= 1, the last VF within 0xffff
          unsupported: [link-state, min-rate]   # default: the driver's known table
          bus_resources: true
          vf_bar_space: true
        num_vfs: 0                   # VFs enabled when the simulated host boots

Parsing validates everything and raises InvalidInput(``invalid-host-spec``) naming
the field. Pure: reading files (YAML, built-in specs) is ``adapters.sim.spec``'s job;
``spec_document`` is the inverse, used by ``iovctl host snapshot``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from iovctl.domain.drivers import VF_DRIVER, unsupported_settings
from iovctl.domain.model import Adapter, HostFacts, SriovCapability, VfSetting
from iovctl.domain.text import first_control_character, shown
from iovctl.domain.validation import normalize_mac
from iovctl.errors import InvalidInput

_PCI_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$")
_SPEC_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
#: Largest PCIe routing ID (bus << 8 | device << 3 | function): VFs past it do not exist.
_MAX_RID = 0xFFFF
#: Fastest Ethernet there is (1.6 Tb/s, IEEE 802.3dj); more is a typo.
MAX_LINK_SPEED_MBPS = 1_600_000
#: Bounds of counts a spec gives (queue pairs and the like): beyond them it is a typo.
_MAX_COUNT = 1 << 20
#: Most network adapters a spec may describe (one per PCI bus is already plenty).
MAX_ADAPTERS = 256
#: Longest free-text value (description, model, command line).
_MAX_TEXT = 4096


@dataclass(frozen=True)
class AdapterSpec:
    adapter: Adapter
    vf_offset: int
    vf_stride: int


@dataclass(frozen=True)
class HostSpec:
    name: str
    description: str
    facts: HostFacts
    adapters: tuple[AdapterSpec, ...]
    #: The validated document, kept to store the spec in the state directory.
    document: dict[str, Any]

    def adapter_spec(self, name: str) -> AdapterSpec | None:
        for spec in self.adapters:
            if spec.adapter.name == name:
                return spec
        return None


def spec_error(where: str, problem: str) -> InvalidInput:
    return InvalidInput(
        "invalid-host-spec",
        f"host spec: {where}: {problem}",
        "see the format in the iovctl.domain.host_spec docstring or adapters/sim/specs/demo.yaml",
    )


def _section(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise spec_error(key, "must be a mapping")
    return value


def _flag(section: dict[str, Any], where: str, key: str, default: bool = True) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise spec_error(f"{where}.{key}", f"must be true or false, not {shown(repr(value))}")
    return value


def _maybe(section: dict[str, Any], where: str, key: str) -> bool | None:
    """A fact a real host may be unable to check: true, false or null (unverified)."""
    if key in section and section[key] is None:
        return None
    value = section.get(key, True)
    if not isinstance(value, bool):
        raise spec_error(
            f"{where}.{key}", f"must be true, false or null (unverified), not {shown(repr(value))}"
        )
    return value


def _int(
    section: dict[str, Any],
    where: str,
    key: str,
    default: int | None = None,
    *,
    minimum: int = 0,
    maximum: int = _MAX_COUNT,
) -> int:
    value = section.get(key, default)
    if value is None:
        raise spec_error(f"{where}.{key}", "is required")
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise spec_error(
            f"{where}.{key}",
            f"must be an integer from {minimum} to {maximum}, not {shown(repr(value))}",
        )
    return value


def _text(section: dict[str, Any], where: str, key: str, default: str) -> str:
    value = section.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise spec_error(
            f"{where}.{key}",
            f"must be text of at most {_MAX_TEXT} characters, not {shown(repr(value))}",
        )
    return value


def _link_speed(raw: dict[str, Any], where: str) -> int | None:
    """Mb/s, or None (``null``) when unknown: no link, or a driver that does not say."""
    value = raw.get("link_speed_mbps", 1000)
    if value is None:
        return None
    return _int(raw, where, "link_speed_mbps", 1000, minimum=1, maximum=MAX_LINK_SPEED_MBPS)


def _hexid(section: dict[str, Any], where: str, key: str, default: str) -> str:
    value = str(section.get(key, default)).lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{4}", value):
        raise spec_error(f"{where}.{key}", f"must be 4 hex digits, not {shown(repr(value))}")
    return value


def _facts(doc: dict[str, Any]) -> HostFacts:
    cpu, iommu = _section(doc, "cpu"), _section(doc, "iommu")
    fw, kernel = _section(doc, "firmware"), _section(doc, "kernel")
    return HostFacts(
        cpu_vendor=_text(cpu, "cpu", "vendor", "intel"),
        cpu_virtualization=_flag(cpu, "cpu", "virtualization"),
        cpu_slat=_flag(cpu, "cpu", "slat"),
        iommu_present=_flag(iommu, "iommu", "present"),
        iommu_enabled=_flag(iommu, "iommu", "enabled"),
        dma_remapping=_flag(iommu, "iommu", "dma_remapping"),
        interrupt_remapping=_maybe(iommu, "iommu", "interrupt_remapping"),
        firmware_sriov_enabled=_maybe(fw, "firmware", "sriov_enabled"),
        pcie_native_control=_maybe(fw, "firmware", "pcie_native_control"),
        acs=_maybe(fw, "firmware", "acs"),
        kernel_pci_iov=_maybe(kernel, "kernel", "pci_iov"),
        vfio_pci=_flag(kernel, "kernel", "vfio_pci"),
        kernel_cmdline=_text(kernel, "kernel", "cmdline", ""),
        virtual_machine=_flag(cpu, "cpu", "hypervisor", False),
    )


def _sriov(raw: Any, where: str, driver: str | None) -> SriovCapability | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise spec_error(where, "must be a mapping")
    total = _int(raw, where, "total_vfs")
    if not 1 <= total <= 2048:
        raise spec_error(f"{where}.total_vfs", "must be between 1 and 2048")
    unsupported_raw = raw.get("unsupported")
    if unsupported_raw is None:
        unsupported = unsupported_settings(driver)
    else:
        try:
            unsupported = frozenset(VfSetting(s) for s in unsupported_raw)
        except (ValueError, TypeError) as exc:
            choices = ", ".join(s.value for s in VfSetting)
            raise spec_error(
                f"{where}.unsupported", f"{shown(str(exc))}; settings are: {choices}"
            ) from exc
    per_vf = _int(raw, where, "max_queue_pairs_per_vf", 1, minimum=1)
    queue_pairs = _int(raw, where, "queue_pairs", total * per_vf, minimum=1)
    if per_vf > queue_pairs:
        raise spec_error(
            f"{where}.max_queue_pairs_per_vf", f"exceeds the PF's queue_pairs ({queue_pairs})"
        )
    return SriovCapability(
        total_vfs=total,
        queue_pairs=queue_pairs,
        max_queue_pairs_per_vf=per_vf,
        vf_driver=_text(raw, where, "vf_driver", VF_DRIVER.get(driver or "", "unknown"))
        or "unknown",
        vf_device_id=_hexid(raw, where, "vf_device_id", "0000"),
        unsupported=unsupported,
        bus_resources=_flag(raw, where, "bus_resources"),
        vf_bar_space=_flag(raw, where, "vf_bar_space"),
    )


def _adapter(raw: Any, i: int) -> AdapterSpec:
    where = f"adapters[{i}]"
    if not isinstance(raw, dict):
        raise spec_error(where, "must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", name):
        raise spec_error(
            f"{where}.name",
            f"must be a Linux interface name (1-15 chars), not {shown(repr(name))}",
        )
    where = f"adapter {name}"
    pci = str(raw.get("pci_address", "")).lower()
    if not _PCI_RE.fullmatch(pci):
        raise spec_error(
            f"{where}.pci_address", f"must look like 0000:01:00.0, not {shown(repr(pci))}"
        )
    driver = raw.get("driver")
    if driver is not None and not (isinstance(driver, str) and 0 < len(driver) <= 64):
        raise spec_error(f"{where}.driver", "must be a driver name or null")
    sriov = _sriov(raw.get("sriov"), f"{where}.sriov", driver)
    num_vfs = _int(raw, where, "num_vfs", 0)
    if num_vfs and (sriov is None or num_vfs > sriov.total_vfs):
        raise spec_error(f"{where}.num_vfs", "exceeds the adapter's total_vfs")
    try:
        mac = normalize_mac(str(raw.get("mac", f"52:54:00:00:{i // 256:02x}:{i % 256:02x}")))
    except InvalidInput as exc:
        raise spec_error(f"{where}.mac", exc.message) from exc
    adapter = Adapter(
        name=name,
        pci_address=pci,
        vendor_id=_hexid(raw, where, "vendor_id", "8086"),
        device_id=_hexid(raw, where, "device_id", "0000"),
        driver=driver,
        model=_text(raw, where, "model", "Ethernet controller"),
        link_speed_mbps=_link_speed(raw, where),
        numa_node=_int(raw, where, "numa_node", 0, maximum=1023),
        mac=mac,
        sriov=sriov,
        num_vfs=num_vfs,
    )
    sriov_raw = raw.get("sriov") or {}
    # PCIe SR-IOV capability: VF n has routing ID PF + First VF Offset + n * VF Stride;
    # neither is 0 (VF 0 is not the PF, two VFs never share an address).
    offset = _int(sriov_raw, f"{where}.sriov", "vf_offset", 128, minimum=1, maximum=_MAX_RID)
    stride = _int(sriov_raw, f"{where}.sriov", "vf_stride", 2, minimum=1, maximum=_MAX_RID)
    if sriov is not None:
        last = _rid(pci) + offset + (sriov.total_vfs - 1) * stride
        if last > _MAX_RID:
            raise spec_error(
                f"{where}.sriov",
                f"VF {sriov.total_vfs - 1} would sit at routing ID {last:#x}, past the PCI "
                f"address space ({_MAX_RID:#x}): lower vf_offset, vf_stride or total_vfs",
            )
    return AdapterSpec(adapter, vf_offset=offset, vf_stride=stride)


def parse_spec(doc: Any) -> HostSpec:
    """Validate a host spec document (already parsed from YAML/JSON)."""
    if not isinstance(doc, dict):
        raise spec_error("document", "must be a mapping")
    hidden = first_control_character(doc)
    if hidden is not None:
        where, char = hidden
        raise spec_error(
            shown(where), f"holds the control character U+{ord(char):04X} (terminals obey it)"
        )
    name = doc.get("name")
    if name is None or name == "":
        raise spec_error("name", "is required")
    if not isinstance(name, str) or not _SPEC_NAME_RE.fullmatch(name):
        raise spec_error(
            "name",
            f"must be 1-64 letters, digits, '_', '.', ':' or '-', not {shown(repr(name))}",
        )
    raw_adapters = doc.get("adapters")
    if not isinstance(raw_adapters, list) or not raw_adapters:
        raise spec_error("adapters", "must be a non-empty list")
    if len(raw_adapters) > MAX_ADAPTERS:
        raise spec_error("adapters", f"more than {MAX_ADAPTERS}; no host has that many NICs")
    adapters = tuple(_adapter(raw, i) for i, raw in enumerate(raw_adapters))
    for key in ("name", "pci_address", "mac"):
        counts = Counter(getattr(a.adapter, key) for a in adapters)
        dupes = sorted(v for v, n in counts.items() if n > 1)
        if dupes:
            raise spec_error("adapters", f"duplicate {key}: {', '.join(dupes)}")
    description = _text(doc, "document", "description", "")
    return HostSpec(name, description, _facts(doc), adapters, doc)


def _rid(pci: str) -> int:
    _, bus, devfn = pci.split(":")
    dev, fn = devfn.split(".")
    return (int(bus, 16) << 8) | (int(dev, 16) << 3) | int(fn)


def spec_document(
    name: str,
    facts: HostFacts,
    adapters: list[Adapter],
    vf_addresses: dict[str, list[str]],
    description: str = "",
) -> dict[str, Any]:
    """The inverse of :func:`parse_spec`: a host spec document describing a machine.

    ``vf_addresses`` gives each PF's VF PCI addresses (when VFs are enabled) so the
    VF offset and stride of the SR-IOV capability can be derived; without two VFs
    the PCIe defaults (offset 128, stride 2: the 82576's values) are written.
    """
    out: list[dict[str, Any]] = []
    for a in adapters:
        entry: dict[str, Any] = {
            "name": a.name,
            "pci_address": a.pci_address,
            "vendor_id": a.vendor_id,
            "device_id": a.device_id,
            "driver": a.driver,
            "model": a.model,
            "link_speed_mbps": a.link_speed_mbps,
            "numa_node": a.numa_node,
            "mac": a.mac,
        }
        if not a.mac:  # no netdev (driver unbound): the loader makes one up
            del entry["mac"]
        cap = a.sriov
        if cap is not None:
            vfs = vf_addresses.get(a.name, [])
            offset = _rid(vfs[0]) - _rid(a.pci_address) if vfs else 128
            stride = _rid(vfs[1]) - _rid(vfs[0]) if len(vfs) > 1 else 2
            entry["sriov"] = {
                "total_vfs": cap.total_vfs,
                "queue_pairs": cap.queue_pairs,
                "max_queue_pairs_per_vf": cap.max_queue_pairs_per_vf,
                "vf_driver": cap.vf_driver,
                "vf_device_id": cap.vf_device_id or "0000",
                "vf_offset": offset,
                "vf_stride": stride,
                "unsupported": sorted(s.value for s in cap.unsupported),
                "bus_resources": cap.bus_resources,
                "vf_bar_space": cap.vf_bar_space,
            }
            entry["num_vfs"] = a.num_vfs
        out.append(entry)
    return {
        "name": name,
        "description": description,
        "cpu": {
            "vendor": facts.cpu_vendor,
            "virtualization": facts.cpu_virtualization,
            "slat": facts.cpu_slat,
            "hypervisor": facts.virtual_machine,
        },
        "iommu": {
            "present": facts.iommu_present,
            "enabled": facts.iommu_enabled,
            "dma_remapping": facts.dma_remapping,
            "interrupt_remapping": facts.interrupt_remapping,
        },
        "firmware": {
            "sriov_enabled": facts.firmware_sriov_enabled,
            "pcie_native_control": facts.pcie_native_control,
            "acs": facts.acs,
        },
        "kernel": {
            "pci_iov": facts.kernel_pci_iov,
            "vfio_pci": facts.vfio_pci,
            "cmdline": facts.kernel_cmdline,
        },
        "adapters": out,
    }
