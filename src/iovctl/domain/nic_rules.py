"""Rules for one VM network adapter: the VF settings it needs, and why it may not get a VF."""

from __future__ import annotations

from iovctl.domain.model import (
    SCRUBBED,
    NicConfig,
    PvlanMode,
    Reason,
    VfSetting,
    VfSettings,
)


def vf_settings_for(config: NicConfig) -> VfSettings:
    """What a VF must carry to act as this NIC: same MAC, VLAN, spoof check, trust, rate."""
    vlan = config.vlan or 0
    if config.pvlan is not None:
        # On the VF path the NIC's embedded switch tags with the primary VLAN; isolation
        # between VFs is the PVLAN capability of the adapter (see required_settings).
        vlan = config.pvlan.primary_vlan
    return SCRUBBED.with_(
        mac=config.mac,
        vlan=vlan,
        spoof_check=not config.allow_mac_spoofing,
        trust=config.trust,
        max_rate=config.max_rate or 0,
    )


def required_settings(config: NicConfig) -> set[VfSetting]:
    """VF settings the driver must support for the VF to honour this NIC's config."""
    needed = set(vf_settings_for(config).changed_settings())
    needed.add(VfSetting.MAC)
    if config.pvlan is not None and config.pvlan.mode is not PvlanMode.PROMISCUOUS:
        needed.add(VfSetting.PVLAN)
    return needed


def unsupported_reason(
    config: NicConfig, driver: str, unsupported: frozenset[VfSetting]
) -> Reason | None:
    """Why a VF of this driver cannot carry the NIC's settings (NIC stays on software)."""
    missing = sorted(required_settings(config) & unsupported)
    if not missing:
        return None
    words = ", ".join(s.label for s in missing)
    return Reason(
        "vf-setting-unsupported",
        f"the {driver} driver does not support {words} on VFs; the NIC stays on the "
        "software path so its settings keep holding",
        "drop the setting from the NIC (iovctl nic set) or use an uplink whose driver supports it",
    )
