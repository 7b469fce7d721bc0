"""Rules for one VM network adapter: the VF settings it needs, and why it may not get a VF."""

from __future__ import annotations

from iovctl.domain.model import (
    SCRUBBED,
    NicConfig,
    NicStatus,
    Reason,
    VfSetting,
    VfSettings,
)


def vf_settings_for(config: NicConfig) -> VfSettings:
    """What a VF must carry to act as this NIC: same MAC, VLAN or private VLAN, spoof
    check, trust, rate.

    A private VLAN is one setting of its own, in every mode: the NIC's embedded switch
    must tell its VFs apart by it (domain.pvlan). A promiscuous port needs it as much
    as the others: on a plain VLAN (the primary) a VF would not reach the isolated and
    community ports of that primary VLAN. A driver without it (every real one: there
    is no IFLA_VF_* for it) keeps the NIC on the software path, which enforces it.
    """
    return SCRUBBED.with_(
        mac=config.mac,
        vlan=config.vlan or 0,
        pvlan=config.pvlan,
        spoof_check=not config.allow_mac_spoofing,
        trust=config.trust,
        max_rate=config.max_rate or 0,
    )


def required_settings(config: NicConfig) -> set[VfSetting]:
    """VF settings the driver must support for the VF to honour this NIC's config."""
    needed = set(vf_settings_for(config).changed_settings())
    needed.add(VfSetting.MAC)
    return needed


_BIT = {setting: 1 << i for i, setting in enumerate(VfSetting)}


def settings_mask(settings: set[VfSetting] | frozenset[VfSetting]) -> int:
    """A set of VF settings as a bitmask (stored with each NIC, matched in SQL)."""
    mask = 0
    for setting in settings:
        mask |= _BIT[setting]
    return mask


def settings_from_mask(mask: int) -> set[VfSetting]:
    return {s for s, bit in _BIT.items() if mask & bit}


def required_mask(config: NicConfig) -> int:
    return settings_mask(required_settings(config))


def unsupported_reason(
    config: NicConfig, driver: str, unsupported: frozenset[VfSetting]
) -> Reason | None:
    """Why a VF of this driver cannot carry the NIC's settings (NIC stays on software)."""
    return mask_reason(required_mask(config), driver, unsupported)


def mask_reason(needs: int, driver: str, unsupported: frozenset[VfSetting]) -> Reason | None:
    """``unsupported_reason`` from a NIC's stored requirement mask (no config needed)."""
    if not needs & settings_mask(unsupported):
        return None
    missing = sorted(settings_from_mask(needs) & unsupported)
    words = ", ".join(s.label for s in missing)
    return Reason(
        "vf-setting-unsupported",
        f"the {driver} driver does not support {words} on VFs; the NIC stays on the "
        "software path so its settings keep holding",
        "drop the setting from the NIC (iovctl nic set) or use an uplink whose driver supports it",
    )


#: ``wait_reason`` of a NIC whose guest never took its VF: the hypervisor plugged it
#: but the guest's virtio_net never negotiated failover (QEMU holds the VF back).
GUEST_NO_FAILOVER = "guest-no-failover"


def nic_status(
    *,
    running: bool,
    weight: int,
    switch_name: str,
    switch_reasons: list[Reason],
    unsupported: Reason | None,
    holding: tuple[str, int, int] | None,
    wait_reason: str | None,
    uplink: str,
    vf_count: int,
    vf_active: bool = True,
    grant_error: str | None = None,
) -> tuple[NicStatus, str, str]:
    """``status``, ``status_reason`` and ``status_description`` of a NIC: which path,
    and why. The reason is a stable code (a metric label, a filter); the description
    the sentence a person reads.

    ``vf_active``: the runtime's answer for a NIC that holds a VF (the machine may
    have lost it underneath: a PF reset, a VF count changed behind iovctl's back).
    """
    if not running:
        return NicStatus.OFF, "vm-off", "The VM is not running; a VF is assigned when it starts."
    if holding is not None and holding[1] >= vf_count:
        return (
            NicStatus.DEGRADED,
            "vf-gone",
            f"Software path: VF {holding[1]} of {holding[0]} is gone ({holding[0]} has "
            f"{vf_count} VFs now); iovctl apply restores the VF count and reattaches it.",
        )
    if holding is not None and not vf_active:
        return (
            NicStatus.DEGRADED,
            "vf-not-attached",
            f"Software path: VF {holding[1]} of {holding[0]} is assigned but carries no "
            "traffic (not attached to the VM); iovctl apply reattaches it.",
        )
    if holding is not None:
        adapter, index, qps = holding
        pairs = "queue pair" if qps == 1 else "queue pairs"
        return (
            NicStatus.OK,
            "on-vf",
            f"On VF {index} of {adapter} ({qps} {pairs}); software path on standby.",
        )
    if weight == 0:
        return NicStatus.OK, "iov-weight-zero", "SR-IOV is off for this NIC (IOV weight 0): software path."
    if switch_reasons:
        first = switch_reasons[0]
        if first.code == "switch-iov-off":
            return NicStatus.DEGRADED, first.code, f"Software path: {first.message}"
        return (
            NicStatus.DEGRADED,
            first.code,
            f"Software path: switch {switch_name} cannot use SR-IOV: {first.message}",
        )
    if unsupported is not None:
        return NicStatus.DEGRADED, unsupported.code, f"Software path: {unsupported.message}"
    if grant_error is not None and wait_reason == GUEST_NO_FAILOVER:
        return (
            NicStatus.DEGRADED,
            GUEST_NO_FAILOVER,
            f"Software path: {grant_error}. The guest needs virtio_net with failover "
            "(Linux >= 4.18, CONFIG_NET_FAILOVER; configure the failover master, not the "
            "standby); a VM restart, nic set or iovctl apply tries again.",
        )
    if grant_error is not None:
        return (
            NicStatus.DEGRADED,
            "vf-grant-refused",
            f"Software path: the machine refused it a VF ({grant_error}); a VM restart, "
            "nic set or iovctl apply tries again.",
        )
    if wait_reason == "queue-pairs-exhausted":
        return (
            NicStatus.DEGRADED,
            "queue-pairs-exhausted",
            f"Software path: no queue pairs left on {uplink}; waiting for a VF.",
        )
    return (
        NicStatus.DEGRADED,
        "vfs-exhausted",
        f"Software path: all {vf_count} VFs of {uplink} are in use by NICs of equal or "
        "higher IOV weight; waiting for a VF.",
    )
