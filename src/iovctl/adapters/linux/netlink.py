"""Per-VF settings over rtnetlink (``IFLA_VF_*`` on the PF), through pyroute2.

Reads every VF of a PF with one ``RTM_GETLINK`` and writes one VF's settings with one
``RTM_NEWLINK``; translates the kernel's errno into iovctl errors that name the driver
and the setting. Kernel names (``IFLA_VF_*``, ``RTEXT_FILTER_*``) stay in this module.

Size of a 256-VF reply (net/core/rtnetlink.c, ``rtnl_vfinfo_size``): without
statistics one ``IFLA_VF_INFO`` is 196 bytes (MAC 40, broadcast 36, VLAN 16, VLAN
list 24, rates 28, spoof check/link state/RSS/trust 12 each, nest 4), so 256 VFs take
~50 KB. With ``IFLA_VF_STATS`` it is ~296 bytes, and the ``IFLA_VFINFO_LIST`` nest,
whose ``nla_len`` is a u16, silently overflows above ~221 VFs. We therefore always ask
with ``RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS`` for settings, and read traffic counters
(:meth:`NetlinkVfs.stats`) with a request of their own that walks the VF entries
by ``IFLA_NUM_VF``, not by the nest's wrapped length. On the receiving side pyroute2
0.9 reads each datagram through asyncio's datagram transport (``max_size`` 256 KiB;
its ``rcvsize=16384`` argument is not used for reads), and we set the socket's
``SO_RCVBUF`` explicitly (:data:`RECEIVE_BUFFER`). The count of decoded entries is
checked against ``IFLA_NUM_VF``: a short list raises instead of returning fewer VFs
(the failure mode of the neutron agent above 108 VFs).

Writing is all or nothing where it can be: do_setvfinfo applies a VF's attributes in
a fixed order and stops at the first refusal, leaving the earlier ones applied. So a
non-default value for a setting the driver table says the driver refuses is refused
here, before anything is sent (the hardware contract: a refusal changes nothing).
Only drivers the table does not know (or a table that is wrong) reach a kernel
refusal; then the error names the setting found by reading the VF back.

Must not import sysfs code, services, the CLI or anything outside the domain model,
``iovctl.errors`` and pyroute2.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from iovctl.domain.model import (
    SCRUBBED,
    LinkState,
    VfSetting,
    VfSettings,
    VfStats,
    VlanProtocol,
)
from iovctl.errors import HardwareError, InvalidInput, UnsupportedVfSetting

V = VfSetting

#: include/uapi/linux/rtnetlink.h: ask for IFLA_VFINFO_LIST ...
RTEXT_FILTER_VF = 1 << 0
#: ... but without IFLA_VF_STATS, which would overflow the u16 nest length (see above).
RTEXT_FILTER_SKIP_STATS = 1 << 3
VF_INFO_EXT_MASK = RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS
#: Traffic counters: the VF list with IFLA_VF_STATS (its wrapped length is walked around).
VF_STATS_EXT_MASK = RTEXT_FILTER_VF

#: SO_RCVBUF for the rtnetlink socket: 20 times a 256-VF reply (~50 KB). The kernel
#: caps it at net.core.rmem_max (then doubles it), which still holds one reply.
RECEIVE_BUFFER = 1 << 20

#: rtnetlink.c rtnl_fill_vfinfo presets spoofchk/trust to -1 ("driver did not report").
_UNREPORTED = 0xFFFFFFFF

ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8

_LINK_STATE_CODES = {LinkState.AUTO: 0, LinkState.ENABLE: 1, LinkState.DISABLE: 2}
_LINK_STATE_BY_CODE = {code: state for state, code in _LINK_STATE_CODES.items()}

_ATTR_OF_SETTING = {
    V.MAC: "mac",
    V.VLAN: "vlan",
    V.QOS: "qos",
    V.VLAN_PROTOCOL: "vlan_protocol",
    V.SPOOF_CHECK: "spoof_check",
    V.TRUST: "trust",
    V.MAX_RATE: "max_rate",
    V.MIN_RATE: "min_rate",
    V.LINK_STATE: "link_state",
}

#: What the kernel answers for each refused setting (igb, docs/reference/linux-sriov.md); EOPNOTSUPP is
#: rtnetlink.c's answer for a missing ndo_set_vf_*.
EXPECTED_REFUSAL_ERRNO = {
    V.MIN_RATE: errno.EINVAL,
    V.VLAN_PROTOCOL: errno.EPROTONOSUPPORT,
}

#: do_setvfinfo's order of the settings iovctl sends.
KERNEL_ORDER = (
    V.MAC,
    V.VLAN,
    V.QOS,
    V.VLAN_PROTOCOL,
    V.MAX_RATE,
    V.MIN_RATE,
    V.SPOOF_CHECK,
    V.LINK_STATE,
    V.TRUST,
)

#: Errnos a driver (or rtnetlink.c for a missing ndo_set_vf_*) uses to refuse a setting.
_REFUSALS = frozenset({errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.EINVAL})


def setting_value(settings: VfSettings, setting: VfSetting) -> object:
    """The value ``settings`` holds for ``setting`` (the VfSettings field behind it)."""
    return getattr(settings, _ATTR_OF_SETTING[setting])


@dataclass(frozen=True)
class VfReport:
    """One VF as the PF driver reports it (``ndo_get_vf_config``)."""

    index: int
    settings: VfSettings
    #: Settings the driver left unreported (rtnetlink presets them to -1); their value
    #: in ``settings`` is the scrubbed default.
    unreported: frozenset[VfSetting] = frozenset()

    def holds(self, setting: VfSetting, desired: VfSettings) -> bool | None:
        """Whether the VF holds ``desired``'s value for ``setting``; None if unknown."""
        if setting in self.unreported:
            return None
        return setting_value(self.settings, setting) == setting_value(desired, setting)


# ---------------------------------------------------------------------------- reading

# The VF list is parsed from the reply's bytes, not through pyroute2's attribute
# objects: their lazy decoding costs ~150 us per VF (40 ms for 256 VFs), the
# struct walk below ~4 us, and a one-VF read skips the others by their length.
# Attribute numbers and layouts: include/uapi/linux/if_link.h.
IFLA_IFNAME = 3
IFLA_NUM_VF = 21
IFLA_VFINFO_LIST = 22
IFLA_VF_INFO = 1
IFLA_VF_MAC = 1  # struct ifla_vf_mac {u32 vf; u8 mac[32]}
IFLA_VF_VLAN = 2  # struct ifla_vf_vlan {u32 vf, vlan, qos}
IFLA_VF_TX_RATE = 3  # struct ifla_vf_tx_rate {u32 vf, rate}
IFLA_VF_SPOOFCHK = 4  # struct ifla_vf_spoofchk {u32 vf, setting}
IFLA_VF_LINK_STATE = 5  # struct ifla_vf_link_state {u32 vf, link_state}
IFLA_VF_RATE = 6  # struct ifla_vf_rate {u32 vf, min_tx_rate, max_tx_rate}
IFLA_VF_STATS = 8  # nest of IFLA_VF_STATS_* (u64 each)
IFLA_VF_TRUST = 9  # struct ifla_vf_trust {u32 vf, setting}
IFLA_VF_VLAN_LIST = 12  # nest of IFLA_VF_VLAN_INFO
IFLA_VF_VLAN_INFO = 1  # struct ifla_vf_vlan_info {u32 vf, vlan, qos; __be16 vlan_proto}
#: nla_type's flag bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER).
NLA_TYPE_MASK = 0x3FFF
#: sizeof(struct nlmsghdr) + sizeof(struct ifinfomsg)
IFINFO_HEADER = 32

#: IFLA_VF_STATS_* (if_link.h) -> VfStats field. The kernel's names are the VF's view
#: (rx: received by the VF). BROADCAST (4), MULTICAST (5) and PAD (6) are not kept.
_VF_STATS_FIELDS = {
    0: "receive_packets",  # IFLA_VF_STATS_RX_PACKETS
    1: "transmit_packets",  # IFLA_VF_STATS_TX_PACKETS
    2: "receive_bytes",  # IFLA_VF_STATS_RX_BYTES
    3: "transmit_bytes",  # IFLA_VF_STATS_TX_BYTES
    7: "receive_dropped",  # IFLA_VF_STATS_RX_DROPPED
    8: "transmit_dropped",  # IFLA_VF_STATS_TX_DROPPED
}

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_U32X2 = struct.Struct("<II")
_U32X3 = struct.Struct("<III")
_BE16 = struct.Struct(">H")
_NLA = struct.Struct("<HH")


def _attributes(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, payload start, payload end) of each netlink attribute in data[start:end]."""
    offset = start
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            break  # malformed: nla_ok() would stop here too
        yield kind & NLA_TYPE_MASK, offset + 4, min(offset + length, end)
        offset += (length + 3) & ~3


@dataclass
class VfInfoList:
    """The VF part of one RTM_NEWLINK reply, read from its bytes.

    ``entries`` are the (start, end) payload spans of each IFLA_VF_INFO, in message
    order; a VF's report is parsed only when asked for. ``written`` holds what a
    successful write since the dump made a VF report (:meth:`NetlinkVfs.write`), so
    one dump serves a whole command.
    """

    data: bytes
    name: str
    #: IFLA_NUM_VF; None when the kernel left it out (then the list's length counts).
    num_vfs: int | None
    entries: tuple[tuple[int, int], ...]
    written: dict[int, VfReport] = field(default_factory=dict)

    @classmethod
    def of(cls, link: Any) -> VfInfoList:
        """From a pyroute2 message (``.data``/``.offset`` hold the reply's bytes)."""
        data = bytes(link.data[link.offset : link.offset + link["header"]["length"]])
        name = ""
        num_vfs = None
        entries: tuple[tuple[int, int], ...] = ()
        for kind, start, end in _attributes(data, IFINFO_HEADER, len(data)):
            if kind == IFLA_IFNAME:
                name = data[start:end].split(b"\0", 1)[0].decode(errors="replace")
            elif kind == IFLA_NUM_VF:
                num_vfs = _U32.unpack_from(data, start)[0]
            elif kind == IFLA_VFINFO_LIST:
                entries = tuple(
                    (s, e) for k, s, e in _attributes(data, start, end) if k == IFLA_VF_INFO
                )
        if not name:
            name = f"ifindex {link.get('index')}"
        return cls(data, name, num_vfs, entries)

    @property
    def expected(self) -> int:
        return self.num_vfs if self.num_vfs is not None else len(self.entries)

    def reports(self) -> list[VfReport]:
        """Every VF's report by index; ``vf-info-incomplete`` when any is missing."""
        reports = sorted((self._report(s, e) for s, e in self.entries), key=lambda r: r.index)
        if [report.index for report in reports] != list(range(self.expected)):
            raise self._incomplete(len(reports))
        return [self.written.get(report.index, report) for report in reports]

    def report(self, index: int) -> VfReport | None:
        """VF ``index``'s report, parsing no other VF; None when ``index`` is out of
        range; ``vf-info-incomplete`` when the list lacks it."""
        if not 0 <= index < self.expected:
            return None
        if index in self.written:
            return self.written[index]
        if len(self.entries) == self.expected:
            # rtnl_fill_vfinfo lists VFs in index order: try the entry in place first.
            start, end = self.entries[index]
            if self._index(start, end) == index:
                return self._report(start, end)
        for start, end in self.entries:
            if self._index(start, end) == index:
                return self._report(start, end)
        raise self._incomplete(len(self.entries))

    def _incomplete(self, listed: int) -> HardwareError:
        return HardwareError(
            "vf-info-incomplete",
            f"the kernel reported settings for {listed} of the {self.expected} VFs of {self.name}",
            "retry in a few seconds (the driver may still be creating VFs); if it persists, "
            "compare with: ip -s0 link show " + self.name,
        )

    def _index(self, start: int, end: int) -> int:
        for kind, payload, _ in _attributes(self.data, start, end):
            if kind in _CARRY_INDEX:
                return int(_U32.unpack_from(self.data, payload)[0])
        return -1

    def _report(self, start: int, end: int) -> VfReport:
        # One pass over the VF's attributes, inline (this runs 256 times a dump).
        data = self.data
        index = -1
        values: dict[str, Any] = {}
        unreported = {V.SPOOF_CHECK, V.TRUST}
        tx_rate: int | None = None
        offset = start
        while offset + 4 <= end:
            length, kind = _NLA.unpack_from(data, offset)
            if length < 4:
                break
            kind &= NLA_TYPE_MASK
            payload = offset + 4
            offset += (length + 3) & ~3
            if kind == IFLA_VF_MAC:
                index = _U32.unpack_from(data, payload)[0]
                values["mac"] = data[payload + 4 : payload + 10].hex(":")
            elif kind == IFLA_VF_VLAN:
                index, values["vlan"], values["qos"] = _U32X3.unpack_from(data, payload)
            elif kind == IFLA_VF_RATE:
                index, values["min_rate"], values["max_rate"] = _U32X3.unpack_from(data, payload)
            elif kind == IFLA_VF_TX_RATE:  # kernels before IFLA_VF_RATE (3.16)
                index, tx_rate = _U32X2.unpack_from(data, payload)
            elif kind in (IFLA_VF_SPOOFCHK, IFLA_VF_TRUST):
                index, value = _U32X2.unpack_from(data, payload)
                if value != _UNREPORTED:
                    setting = V.SPOOF_CHECK if kind == IFLA_VF_SPOOFCHK else V.TRUST
                    values[_ATTR_OF_SETTING[setting]] = bool(value)
                    unreported.discard(setting)
            elif kind == IFLA_VF_LINK_STATE:
                code = _U32X2.unpack_from(data, payload)[1]
                values["link_state"] = _LINK_STATE_BY_CODE.get(code, LinkState.AUTO)
            elif kind == IFLA_VF_VLAN_LIST:
                for inner, info, info_end in _attributes(data, payload, min(offset, end)):
                    if inner == IFLA_VF_VLAN_INFO and info_end - info >= 14:
                        if _BE16.unpack_from(data, info + 12)[0] == ETH_P_8021AD:
                            values["vlan_protocol"] = VlanProtocol.DOT1AD
                        break
        if "max_rate" not in values and tx_rate is not None:
            values["max_rate"] = tx_rate
        return VfReport(int(index), SCRUBBED.with_(**values), frozenset(unreported))


#: The attributes whose struct starts with the VF's index (u32 vf).
_CARRY_INDEX = frozenset(
    {IFLA_VF_MAC, IFLA_VF_VLAN, IFLA_VF_RATE, IFLA_VF_TX_RATE, IFLA_VF_SPOOFCHK}
)


def parse_vf_reports(link: Any) -> list[VfReport]:
    """The VF reports in one decoded RTM_NEWLINK (a pyroute2 ``ifinfmsg``), by index.

    Raises HardwareError ``vf-info-incomplete`` when the message lists fewer VFs than
    its ``IFLA_NUM_VF`` (truncated reply, or a driver that failed to report some).
    """
    return VfInfoList.of(link).reports()


def parse_vf_stats(data: bytes, adapter: str = "") -> dict[int, VfStats]:
    """Every VF's IFLA_VF_STATS in one RTM_NEWLINK (its bytes), by VF index.

    The IFLA_VFINFO_LIST nest of a reply with statistics outgrows its u16 length
    above ~221 VFs (nla_nest_end stores it wrapped), so the list is walked entry by
    entry for IFLA_NUM_VF entries, each IFLA_VF_INFO by its own (small) length, and
    nothing after the list is read. Raises HardwareError ``vf-info-incomplete`` when
    an entry is missing or carries no counters.
    """
    name, num_vfs, offset = adapter, None, IFINFO_HEADER
    while offset + 4 <= len(data):
        length, kind = _NLA.unpack_from(data, offset)
        kind &= NLA_TYPE_MASK
        if length < 4:
            break
        if kind == IFLA_IFNAME and not name:
            name = data[offset + 4 : offset + length].split(b"\0", 1)[0].decode(errors="replace")
        elif kind == IFLA_NUM_VF:
            num_vfs = _U32.unpack_from(data, offset + 4)[0]
        elif kind == IFLA_VFINFO_LIST:
            return _walk_vf_stats(data, offset + 4, num_vfs, name)
        offset += (length + 3) & ~3
    if num_vfs:
        raise _stats_incomplete(name, 0, num_vfs)
    return {}


def _walk_vf_stats(data: bytes, offset: int, num_vfs: int | None, name: str) -> dict[int, VfStats]:
    out: dict[int, VfStats] = {}
    expected = num_vfs if num_vfs is not None else 0
    while len(out) < expected and offset + 4 <= len(data):
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4 or kind & NLA_TYPE_MASK != IFLA_VF_INFO or offset + length > len(data):
            break
        index, counters = -1, None
        for inner, start, end in _attributes(data, offset + 4, offset + length):
            if inner in _CARRY_INDEX and index < 0:
                index = _U32.unpack_from(data, start)[0]
            elif inner == IFLA_VF_STATS:
                counters = {
                    _VF_STATS_FIELDS[k]: _U64.unpack_from(data, s)[0]
                    for k, s, e in _attributes(data, start, end)
                    if k in _VF_STATS_FIELDS and e - s >= 8
                }
        if index < 0 or counters is None:
            break
        out[int(index)] = VfStats(**counters)
        offset += (length + 3) & ~3
    if sorted(out) != list(range(expected)):
        raise _stats_incomplete(name, len(out), expected)
    return out


def _stats_incomplete(name: str, listed: int, expected: int) -> HardwareError:
    return HardwareError(
        "vf-info-incomplete",
        f"the kernel reported traffic counters for {listed} of the {expected} VFs of {name}",
        "retry in a few seconds (the driver may still be creating VFs); if it persists, "
        "compare with: ip -s link show " + name,
    )


# ---------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class VfAttribute:
    """One ``IFLA_VF_*`` attribute of a request and the settings it carries."""

    name: str
    settings: tuple[VfSetting, ...]
    #: The attribute's fields as pyroute2 encodes them ({"vf": 3, "mac": "..."}).
    value: dict[str, Any]


@dataclass(frozen=True)
class VfRequest:
    """What one RTM_NEWLINK for one VF carries."""

    index: int
    #: In the order rtnetlink.c do_setvfinfo applies them (it stops at the first error).
    attributes: tuple[VfAttribute, ...]

    @property
    def settings(self) -> tuple[VfSetting, ...]:
        return tuple(s for attribute in self.attributes for s in attribute.settings)

    @property
    def empty(self) -> bool:
        return not self.attributes

    def names(self) -> list[str]:
        return [attribute.name for attribute in self.attributes]

    def message(self, ifindex: int) -> ifinfmsg:
        """The RTM_NEWLINK for the PF with ``ifindex`` (not yet encoded)."""
        msg = VfInfoMessage()
        msg["header"]["type"] = RTM_NEWLINK
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
        msg["index"] = ifindex
        vf_info = [(a.name, dict(a.value)) for a in self.attributes]
        msg["attrs"] = [("IFLA_VFINFO_LIST", {"attrs": [("IFLA_VF_INFO", {"attrs": vf_info})]})]
        return msg


# pyroute2 0.9 encodes IFLA_VF_VLAN_INFO as 14 bytes (vf, vlan, qos, proto) while
# struct ifla_vf_vlan_info is 16 (tail padding). Kernels that check the length
# (rtnetlink.c do_setvfinfo: nla_len(attr) < sizeof(struct ifla_vf_vlan_info) ->
# EINVAL; Debian's 6.1.192 does, measured in the testbed) refuse it, so 802.1ad could
# never reach the driver. These subclasses add the padding; nothing else changes.
# pyroute2 caches each class's compiled NLA table in a class attribute, which a
# subclass would inherit from an already used parent: each resets it to compile its
# own (``_nlmsg_base__compiled_nla``, the mangled ``nlmsg_base.__compiled_nla``).
_IVVI = ifinfmsg.vflist.vfinfo.vf_vlist.ivvi


class _PaddedVlanInfo(_IVVI):  # type: ignore[misc, valid-type]
    fields = (*_IVVI.fields, ("__pad", "H"))


class _VlanList(ifinfmsg.vflist.vfinfo.vf_vlist):  # type: ignore[misc]
    _nlmsg_base__compiled_nla = False
    ivvi = _PaddedVlanInfo


class _VfInfo(ifinfmsg.vflist.vfinfo):  # type: ignore[misc]
    _nlmsg_base__compiled_nla = False
    vf_vlist = _VlanList


class _VfInfoList(ifinfmsg.vflist):  # type: ignore[misc]
    _nlmsg_base__compiled_nla = False
    vfinfo = _VfInfo


class VfInfoMessage(ifinfmsg):  # type: ignore[misc]
    """``ifinfmsg`` whose IFLA_VF_VLAN_INFO has the kernel's size (see above)."""

    _nlmsg_base__compiled_nla = False
    vflist = _VfInfoList


def validate_vf_settings(settings: VfSettings, *, adapter: str = "", driver: str = "") -> None:
    """Reject values the kernel would refuse with a bare EINVAL, before sending them.

    Drivers refuse VLAN > 4095 or qos > 7 (igb_ndo_set_vf_vlan, ixgbe, i40e...):
    HardwareError ``vf-setting-invalid`` (EINVAL), as the simulated host reports it.
    rtnetlink.c rtnl_set_vf_rate refuses a max rate below the min rate; a MAC must
    have six octets: InvalidInput.
    """
    if not 0 <= settings.vlan <= 4095 or not 0 <= settings.qos <= 7:
        raise HardwareError(
            "vf-setting-invalid",
            f"the {driver or 'PF'} driver refuses VLAN {settings.vlan} qos {settings.qos} "
            f"on the VFs of {adapter or 'the adapter'}",
            "VLAN ids are 0-4095 and the 802.1p priority (qos) is 0-7",
            errno=errno.EINVAL,
        )
    octets = settings.mac.split(":")
    if len(octets) != 6 or not all(len(o) == 2 and _is_hex(o) for o in octets):
        raise InvalidInput("invalid-mac", f"VF MAC address {settings.mac!r} is malformed")
    for label, rate in (("max rate", settings.max_rate), ("min rate", settings.min_rate)):
        if not 0 <= rate <= 0xFFFFFFFF:
            raise InvalidInput("invalid-rate", f"VF {label} {rate} Mbit/s is out of range")
    if settings.max_rate and settings.max_rate < settings.min_rate:
        raise InvalidInput(
            "invalid-rate",
            f"VF max rate {settings.max_rate} Mbit/s is below its min rate "
            f"{settings.min_rate} Mbit/s",
            "set max rate 0 (unlimited) or at least the min rate",
        )


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def known_refusal(settings: VfSettings, unsupported: frozenset[VfSetting]) -> VfSetting | None:
    """The first setting (in do_setvfinfo's order) with a non-default value that the
    driver refuses per ``unsupported``; None when the request may go out."""
    for setting in KERNEL_ORDER:
        if setting in unsupported and setting_value(settings, setting) != setting_value(
            SCRUBBED, setting
        ):
            return setting
    return None


def plan_vf_request(
    index: int,
    desired: VfSettings,
    unsupported: frozenset[VfSetting],
    current: VfReport | None = None,
) -> VfRequest:
    """The one request that makes VF ``index`` carry ``desired``.

    A setting travels when the driver supports it (per the table) or when its value is
    not the scrubbed default, so scrubbing an igb VF never sends link state. When the
    VF's ``current`` report is known, settings it already holds stay out too: igb, for
    one, refuses any rate request while the PF link is down (igb_ndo_set_vf_bw), so a
    needless "max rate 0" would fail a scrub that changes nothing there.
    """

    def wanted(setting: VfSetting) -> bool:
        value = setting_value(desired, setting)
        if setting in unsupported and value == setting_value(SCRUBBED, setting):
            return False
        return current is None or current.holds(setting, desired) is not True

    attributes: list[VfAttribute] = []

    def add(name: str, settings: tuple[VfSetting, ...], **fields: Any) -> None:
        attributes.append(VfAttribute(name, settings, {"vf": index, **fields}))

    if wanted(V.MAC):
        add("IFLA_VF_MAC", (V.MAC,), mac=desired.mac.lower())

    vlan_settings = tuple(s for s in (V.VLAN, V.QOS, V.VLAN_PROTOCOL) if wanted(s))
    if vlan_settings:
        if desired.vlan_protocol is VlanProtocol.DOT1Q:
            # IFLA_VF_VLAN: rtnetlink.c passes htons(ETH_P_8021Q) to ndo_set_vf_vlan.
            add("IFLA_VF_VLAN", vlan_settings, vlan=desired.vlan, qos=desired.qos)
        else:
            info = {"vf": index, "vlan": desired.vlan, "qos": desired.qos, "proto": ETH_P_8021AD}
            attributes.append(
                VfAttribute(
                    "IFLA_VF_VLAN_LIST",
                    vlan_settings,
                    {"attrs": [("IFLA_VF_VLAN_INFO", info)]},
                )
            )

    rate_settings = tuple(s for s in (V.MAX_RATE, V.MIN_RATE) if wanted(s))
    if rate_settings:
        add(
            "IFLA_VF_RATE",
            rate_settings,
            min_tx_rate=desired.min_rate,
            max_tx_rate=desired.max_rate,
        )
    if wanted(V.SPOOF_CHECK):
        add("IFLA_VF_SPOOFCHK", (V.SPOOF_CHECK,), spoofchk=int(desired.spoof_check))
    if wanted(V.LINK_STATE):
        add(
            "IFLA_VF_LINK_STATE",
            (V.LINK_STATE,),
            link_state=_LINK_STATE_CODES[desired.link_state],
        )
    if wanted(V.TRUST):
        add("IFLA_VF_TRUST", (V.TRUST,), trust=int(desired.trust))
    return VfRequest(index, tuple(attributes))


def applied(before: VfReport, request: VfRequest, desired: VfSettings) -> VfReport:
    """What the VF reports after the kernel accepted ``request``: do_setvfinfo applied
    every attribute it carried; settings the driver does not report stay unreported."""
    changed = {
        _ATTR_OF_SETTING[s]: setting_value(desired, s)
        for s in request.settings
        if s not in before.unreported
    }
    return VfReport(before.index, before.settings.with_(**changed), before.unreported)


# ---------------------------------------------------------------------------- errors


def refusal_error(
    code: int,
    *,
    adapter: str,
    driver: str,
    request: VfRequest,
    desired: VfSettings,
    after: VfReport | None,
    unsupported: frozenset[VfSetting] | None = None,
) -> HardwareError:
    """Translate the kernel's errno for ``request`` into an iovctl error.

    do_setvfinfo applies the attributes in a fixed order and stops at the first
    error, so everything before the culprit is applied. The culprit is found without
    writing again: (1) EPROTONOSUPPORT comes only from the VLAN protocol; (2) the
    driver table (``unsupported``; None for a driver the table does not know) names
    settings the driver refuses; (3) otherwise the VF is read back
    (``after``) and the first attribute it does not hold is the culprit, since the
    request only carried settings the VF did not hold before. A refusal pinned on one
    setting becomes UnsupportedVfSetting, except EINVAL on a setting the table says the
    driver supports: that is a refused value (igb rejects rates while the link is
    down), reported as HardwareError ``vf-setting-rejected``.
    """
    where = f"VF {request.index} of adapter {adapter}"
    if code not in _REFUSALS:
        return _other_error(code, adapter=adapter, driver=driver, where=where)

    carried = request.settings
    if code == errno.EPROTONOSUPPORT and V.VLAN_PROTOCOL in carried:
        return UnsupportedVfSetting(driver, V.VLAN_PROTOCOL.label, errno=code)

    candidates = list(carried)
    pinned: VfSetting | None = None
    if after is not None:
        for position, attribute in enumerate(request.attributes):
            missing = [s for s in attribute.settings if after.holds(s, desired) is False]
            if not missing:
                continue
            earlier = [s for a in request.attributes[:position] for s in a.settings]
            # An earlier setting the driver does not report could be the culprit too.
            unknown = [s for s in earlier if after.holds(s, desired) is None]
            candidates = [*unknown, *missing]
            if len(candidates) == 1:
                pinned = candidates[0]
            break

    known_refusals = [
        s
        for s in candidates
        if unsupported is not None
        and s in unsupported
        and (after is None or after.holds(s, desired) is not True)
    ]
    if known_refusals:
        return UnsupportedVfSetting(driver, known_refusals[0].label, errno=code)

    if pinned is None and len(candidates) == 1:
        pinned = candidates[0]
    if pinned is not None:
        setting = pinned
        if code != errno.EINVAL or unsupported is None:
            return UnsupportedVfSetting(driver, setting.label, errno=code)
        value = setting_value(desired, setting)
        return HardwareError(
            "vf-setting-rejected",
            f"the {driver} driver rejected {setting.label} {value} for {where} "
            f"({errno.errorcode.get(code, code)})",
            _REJECTED_HINTS.get(setting, "check the value against the NIC's limits (dmesg)"),
            errno=code,
        )

    labels = ", ".join(s.label for s in candidates) or "the request"
    return HardwareError(
        "vf-settings-rejected",
        f"the {driver} driver refused the settings of {where} ({errno.errorcode.get(code, code)}); "
        f"the refused one is among: {labels}",
        "check dmesg for the driver's message; apply the settings one at a time with "
        "'ip link set <pf> vf <n> ...' to find the one it refuses",
        errno=code,
    )


_REJECTED_HINTS = {
    V.MAX_RATE: "the PF link must be up and the rate at most the link speed "
    "(ip link set <pf> up; cat /sys/class/net/<pf>/speed)",
    V.MIN_RATE: "the min rate must not exceed the max rate or the link speed",
    V.MAC: "use a unicast MAC address; some drivers refuse changes while the VF is in use",
    V.VLAN: "VLAN 0-4095, priority 0-7",
}


def _other_error(code: int, *, adapter: str, driver: str, where: str) -> HardwareError:
    name = errno.errorcode.get(code, str(code))
    if code in (errno.EPERM, errno.EACCES):
        return HardwareError(
            "permission-denied",
            f"not allowed to change {where} ({name})",
            "run as root (CAP_NET_ADMIN is needed for VF settings)",
            errno=code,
        )
    if code == errno.ENODEV:
        return HardwareError(
            "adapter-gone",
            f"adapter {adapter} disappeared while changing {where}",
            "check that the PF driver is loaded: ip link show " + adapter,
            errno=code,
        )
    return HardwareError(
        "vf-settings-failed",
        f"the {driver} driver failed to change {where} ({name})",
        "check dmesg for the driver's message",
        errno=code,
    )


# ---------------------------------------------------------------------------- adapter

IPRouteFactory = Callable[[], Any]


def default_iproute() -> Any:
    """An rtnetlink socket sized for 256-VF replies (see the module docstring)."""
    return IPRoute(rcvbuf=RECEIVE_BUFFER)


class NetlinkVfs:
    """VF settings of PFs in the current network namespace, one request each way.

    ``iproute_factory`` returns a pyroute2 ``IPRoute`` (or a stand-in with ``link`` and
    ``close``); tests pass one over a fake rtnetlink socket. Writes need CAP_NET_ADMIN.
    """

    def __init__(self, iproute_factory: IPRouteFactory = default_iproute) -> None:
        self._factory = iproute_factory
        self._ipr: Any = None

    @contextmanager
    def _socket(self) -> Iterator[Any]:
        """The one socket of this command, opened on first use (building a pyroute2
        IPRoute costs more than a 256-VF dump); a request that fails mid-way closes
        it, so the next one starts clean."""
        if self._ipr is None:
            self._ipr = self._factory()
        try:
            yield self._ipr
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._ipr is not None:
            ipr, self._ipr = self._ipr, None
            ipr.close()

    def set_up(self, ifindex: int, adapter: str = "") -> None:
        """Bring the netdev with ``ifindex`` administratively up (RTM_NEWLINK, IFF_UP)."""
        try:
            with self._socket() as ipr:
                ipr.link("set", index=ifindex, state="up")
        except NetlinkError as exc:
            raise HardwareError(
                "pf-up-failed",
                f"cannot bring adapter {adapter or ifindex} up: {os.strerror(exc.code)}",
                f"bring it up by hand (ip link set {adapter or 'PF'} up) and try again",
                errno=exc.code,
            ) from exc

    def read(self, ifindex: int, adapter: str = "") -> list[VfReport]:
        """Every VF of the PF with ``ifindex``, in one RTM_GETLINK; [] without VFs."""
        return self.dump(ifindex, adapter).reports()

    def dump(self, ifindex: int, adapter: str = "") -> VfInfoList:
        """The PF's VF list in one RTM_GETLINK, each VF parsed when asked for."""
        with self._socket() as ipr:
            return self._dump(ipr, ifindex, adapter)

    def _read(self, ipr: Any, ifindex: int, adapter: str) -> list[VfReport]:
        return self._dump(ipr, ifindex, adapter).reports()

    def _dump(self, ipr: Any, ifindex: int, adapter: str) -> VfInfoList:
        try:
            replies = ipr.link("get", index=ifindex, ext_mask=VF_INFO_EXT_MASK)
        except NetlinkError as exc:
            raise HardwareError(
                "vf-info-failed",
                f"cannot read the VFs of adapter {adapter or ifindex}: {exc}",
                "check that the adapter still exists: ip link show",
                errno=exc.code,
            ) from exc
        return VfInfoList.of(replies[0])

    def stats(self, ifindex: int, adapter: str = "") -> dict[int, VfStats]:
        """Every VF's traffic counters, in one RTM_GETLINK with IFLA_VF_STATS (see
        :func:`parse_vf_stats`); {} without VFs. Needs no privileges."""
        with self._socket() as ipr:
            try:
                replies = ipr.link("get", index=ifindex, ext_mask=VF_STATS_EXT_MASK)
            except NetlinkError as exc:
                raise HardwareError(
                    "vf-info-failed",
                    f"cannot read the VF counters of adapter {adapter or ifindex}: {exc}",
                    "check that the adapter still exists: ip link show",
                    errno=exc.code,
                ) from exc
        link = replies[0]
        data = bytes(link.data[link.offset : link.offset + link["header"]["length"]])
        return parse_vf_stats(data, adapter)

    def write(
        self,
        ifindex: int,
        index: int,
        settings: VfSettings,
        *,
        adapter: str,
        driver: str,
        unsupported: frozenset[VfSetting] | None = None,
        current: VfInfoList | None = None,
    ) -> VfRequest:
        """Make VF ``index`` carry ``settings`` with one RTM_NEWLINK; return what was sent.

        ``unsupported``: what the driver table says the driver refuses; None when the
        table does not know the driver (everything is sent, the kernel decides). Reads
        the VFs first (one RTM_GETLINK) unless ``current`` (an earlier :meth:`dump`)
        is given, to skip settings the VF already holds and to check ``index``; after
        a successful write ``current`` reports what the kernel applied, after a
        refusal it must not be used again. Raises, in this order:
        HardwareError ``vf-not-found`` (EINVAL) for an index out of range;
        :func:`validate_vf_settings`'s errors for values no driver accepts;
        UnsupportedVfSetting, before sending, for a non-default value of a setting in
        ``unsupported``; UnsupportedVfSetting / HardwareError as :func:`refusal_error`
        says when the kernel refuses. Needs CAP_NET_ADMIN.
        """
        with self._socket() as ipr:
            listing = current if current is not None else self._dump(ipr, ifindex, adapter)
            report = listing.report(index)
            if report is None:
                count = listing.expected
                raise HardwareError(
                    "vf-not-found",
                    f"adapter {adapter} has no VF {index} ({count} VFs enabled)",
                    f"VF indexes run from 0 to {count - 1}"
                    if count
                    else f"enable VFs first: iovctl adapter enable {adapter}",
                    errno=errno.EINVAL,
                )
            validate_vf_settings(settings, adapter=adapter, driver=driver)
            refused = known_refusal(settings, unsupported or frozenset())
            if refused is not None:
                raise UnsupportedVfSetting(
                    driver,
                    refused.label,
                    errno=EXPECTED_REFUSAL_ERRNO.get(refused, errno.EOPNOTSUPP),
                )
            request = plan_vf_request(index, settings, unsupported or frozenset(), report)
            if request.empty:
                return request
            try:
                # Not link("set", vf=...): that encodes IFLA_VF_VLAN_INFO too short.
                ipr.nlm_request_batch([request.message(ifindex)])
            except NetlinkError as exc:
                listing.written.clear()
                after = self._read_after_refusal(ipr, ifindex, adapter, index)
                raise refusal_error(
                    exc.code,
                    adapter=adapter,
                    driver=driver,
                    request=request,
                    desired=settings,
                    after=after,
                    unsupported=unsupported,
                ) from exc
        listing.written[index] = applied(report, request, settings)
        return request

    def _read_after_refusal(
        self, ipr: Any, ifindex: int, adapter: str, index: int
    ) -> VfReport | None:
        try:
            reports = self._read(ipr, ifindex, adapter)
        except HardwareError:
            return None
        return reports[index] if index < len(reports) else None
