"""An in-memory rtnetlink "kernel" for one PF, answering pyroute2 with real messages.

It plugs into ``IPRoute(use_socket=...)`` (pyroute2's ``IPEngine`` provides the socket
plumbing), so the adapter's real code path runs: request encoding, the datagram
read, message decoding. RTM_GETLINK answers with IFLA_NUM_VF and IFLA_VFINFO_LIST,
encoded by pyroute2's own ``ifinfmsg``; unless the request's ext mask has
RTEXT_FILTER_SKIP_STATS each VF carries IFLA_VF_STATS, and the list's u16 nest length
wraps above 64 KiB as nla_nest_end leaves it (net/core/rtnetlink.c rtnl_vfinfo_fill). RTM_NEWLINK applies VF attributes like
net/core/rtnetlink.c do_setvfinfo (fixed order, stop at the first error) with a
driver's errno rules; the default rules are igb's (drivers/net/ethernet/intel/igb,
measured in docs/reference/linux-sriov.md).
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Any

from pyroute2.iproute.ipmock import IPEngine
from pyroute2.netlink import NLMSG_ERROR
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg

ETH_P_8021Q = 0x8100
UNREPORTED = 0xFFFFFFFF


@dataclass
class FakeVf:
    mac: str = "00:00:00:00:00:00"
    vlan: int = 0
    qos: int = 0
    proto: int = ETH_P_8021Q
    min_rate: int = 0
    max_rate: int = 0
    spoofchk: int = 1
    link_state: int = 0
    trust: int = 0
    #: struct ifla_vf_stats (include/linux/if_link.h), what ndo_get_vf_stats reports.
    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    broadcast: int = 0
    multicast: int = 0
    rx_dropped: int = 0
    tx_dropped: int = 0


#: include/uapi/linux/rtnetlink.h
RTEXT_FILTER_SKIP_STATS = 1 << 3
#: IFLA_VF_STATS_* in rtnl_fill_vfinfo's order (nla_put_u64_64bit each; no pad
#: attribute on architectures with efficient unaligned access, like x86-64).
VF_STATS = (
    ("IFLA_VF_STATS_RX_PACKETS", "rx_packets"),
    ("IFLA_VF_STATS_TX_PACKETS", "tx_packets"),
    ("IFLA_VF_STATS_RX_BYTES", "rx_bytes"),
    ("IFLA_VF_STATS_TX_BYTES", "tx_bytes"),
    ("IFLA_VF_STATS_BROADCAST", "broadcast"),
    ("IFLA_VF_STATS_MULTICAST", "multicast"),
    ("IFLA_VF_STATS_RX_DROPPED", "rx_dropped"),
    ("IFLA_VF_STATS_TX_DROPPED", "tx_dropped"),
)


@dataclass
class IgbRules:
    """igb's ndo_set_vf_* answers (igb_main.c)."""

    link_up: bool = True
    link_speed: int = 1000
    #: A driver like ice that takes 802.1ad VLANs (igb answers EPROTONOSUPPORT).
    accept_8021ad: bool = False

    def check(self, attr: str, value: dict[str, Any], num_vfs: int) -> int:
        if value.get("vf", 0) >= num_vfs:
            return errno.EINVAL
        if attr == "IFLA_VF_MAC" and int(value["mac"].split(":")[0], 16) & 1:
            return errno.EINVAL
        if attr in ("IFLA_VF_VLAN", "IFLA_VF_VLAN_INFO"):
            if value["vlan"] > 4095 or value["qos"] > 7:
                return errno.EINVAL
            if value.get("proto", ETH_P_8021Q) != ETH_P_8021Q and not self.accept_8021ad:
                return errno.EPROTONOSUPPORT
        if attr == "IFLA_VF_RATE":
            # igb_ndo_set_vf_bw: EINVAL for a min rate, a down link, above link speed.
            if value["min_tx_rate"] or not self.link_up:
                return errno.EINVAL
            if value["max_tx_rate"] > self.link_speed:
                return errno.EINVAL
        if attr in ("IFLA_VF_LINK_STATE", "IFLA_VF_RSS_QUERY_EN"):
            return errno.EOPNOTSUPP
        return 0


@dataclass
class IceRules(IgbRules):
    """ice's answers, as far as iovctl sends them: 100 Gbit/s, link state and 802.1ad
    accepted (ice_set_vf_link_state, ice_set_vf_port_vlan), min rates too."""

    link_speed: int = 100000
    accept_8021ad: bool = True

    def check(self, attr: str, value: dict[str, Any], num_vfs: int) -> int:
        if attr == "IFLA_VF_LINK_STATE" and value.get("vf", 0) < num_vfs:
            return 0
        if attr == "IFLA_VF_RATE" and value.get("vf", 0) < num_vfs:
            return errno.EINVAL if value["max_tx_rate"] > self.link_speed else 0
        return super().check(attr, value, num_vfs)


#: do_setvfinfo's order.
KERNEL_ORDER = (
    "IFLA_VF_MAC",
    "IFLA_VF_VLAN",
    "IFLA_VF_VLAN_LIST",
    "IFLA_VF_TX_RATE",
    "IFLA_VF_RATE",
    "IFLA_VF_SPOOFCHK",
    "IFLA_VF_LINK_STATE",
    "IFLA_VF_RSS_QUERY_EN",
    "IFLA_VF_TRUST",
)


def vf_info(
    index: int, vf: FakeVf, *, report_spoofchk: bool = True, stats: bool = False
) -> tuple[str, dict[str, Any]]:
    """One IFLA_VF_INFO as rtnl_fill_vfinfo builds it; IFLA_VF_STATS last, only when
    ``stats`` (a request without RTEXT_FILTER_SKIP_STATS)."""
    counters = [("IFLA_VF_STATS", {"attrs": [(name, getattr(vf, f)) for name, f in VF_STATS]})]
    return (
        "IFLA_VF_INFO",
        {
            "attrs": [
                ("IFLA_VF_MAC", {"vf": index, "mac": vf.mac}),
                ("IFLA_VF_VLAN", {"vf": index, "vlan": vf.vlan, "qos": vf.qos}),
                (
                    "IFLA_VF_RATE",
                    {"vf": index, "min_tx_rate": vf.min_rate, "max_tx_rate": vf.max_rate},
                ),
                ("IFLA_VF_TX_RATE", {"vf": index, "tx_rate": vf.max_rate}),
                (
                    "IFLA_VF_SPOOFCHK",
                    {"vf": index, "spoofchk": vf.spoofchk if report_spoofchk else UNREPORTED},
                ),
                ("IFLA_VF_LINK_STATE", {"vf": index, "link_state": vf.link_state}),
                ("IFLA_VF_RSS_QUERY_EN", {"vf": index, "rss_query_en": UNREPORTED}),
                ("IFLA_VF_TRUST", {"vf": index, "trust": vf.trust}),
                (
                    "IFLA_VF_VLAN_LIST",
                    {
                        "attrs": [
                            (
                                "IFLA_VF_VLAN_INFO",
                                {"vf": index, "vlan": vf.vlan, "qos": vf.qos, "proto": vf.proto},
                            )
                        ]
                    },
                ),
                *(counters if stats else []),
            ]
        },
    )


def link_message(
    ifindex: int,
    ifname: str,
    vfs: list[FakeVf],
    *,
    num_vfs: int | None = None,
    report_spoofchk: bool = True,
    sequence_number: int = 0,
) -> ifinfmsg:
    """The RTM_NEWLINK reply for the PF, encoded (``.data`` holds the bytes)."""
    msg = ifinfmsg()
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["sequence_number"] = sequence_number
    msg["family"] = 0
    msg["index"] = ifindex
    msg["attrs"] = [
        ("IFLA_IFNAME", ifname),
        ("IFLA_NUM_VF", len(vfs) if num_vfs is None else num_vfs),
        (
            "IFLA_VFINFO_LIST",
            {
                "attrs": [
                    vf_info(i, vf, report_spoofchk=report_spoofchk) for i, vf in enumerate(vfs)
                ]
            },
        ),
    ]
    msg.encode()
    return msg


@dataclass
class Recorded:
    get_ext_masks: list[int] = field(default_factory=list)
    #: The ifindex each RTM_GETLINK asked for, in order (one dump per PF, not per VF).
    get_indexes: list[int] = field(default_factory=list)
    #: Each RTM_NEWLINK's VF attributes, as (name, fields) in message order.
    set_requests: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)
    #: (ifindex, up) of each RTM_NEWLINK that changed IFF_UP.
    admin_changes: list[tuple[int, bool]] = field(default_factory=list)


@dataclass
class FakeLink:
    """One PF as rtnetlink sees it: its name and its VFs' settings."""

    ifname: str
    vfs: list[FakeVf] = field(default_factory=list)
    #: The last reply's state and bytes (see FakeRtnl._get).
    reply: tuple[Any, bytes] | None = None
    #: Administratively up (IFF_UP).
    up: bool = True


class FakeRtnl(IPEngine):  # type: ignore[misc]
    """rtnetlink for one PF with ``num_vfs`` VFs (more with :meth:`add_pf`); see the
    module docstring. ``vfs`` are the first PF's."""

    def __init__(
        self,
        num_vfs: int = 4,
        *,
        ifindex: int = 3,
        ifname: str = "enp1s0",
        rules: IgbRules | None = None,
        report_spoofchk: bool = True,
        reported_vfs: int | None = None,
    ) -> None:
        super().__init__()
        self.ifindex = ifindex
        self.ifname = ifname
        self.links = {ifindex: FakeLink(ifname, [FakeVf() for _ in range(num_vfs)])}
        self.rules = rules or IgbRules()
        self.report_spoofchk = report_spoofchk
        #: Entries actually listed (fewer than IFLA_NUM_VF: a short reply).
        self.reported_vfs = reported_vfs
        self.recorded = Recorded()
        self._vf_bytes: dict[Any, bytes] = {}
        self.processors[RTM_GETLINK] = self._get
        self.processors[RTM_NEWLINK] = self._set

    @property
    def vfs(self) -> list[FakeVf]:
        return self.links[self.ifindex].vfs

    @vfs.setter
    def vfs(self, vfs: list[FakeVf]) -> None:
        self.links[self.ifindex].vfs = vfs

    def add_pf(self, ifindex: int, ifname: str, num_vfs: int = 0) -> None:
        """Another PF in the same namespace."""
        self.links[ifindex] = FakeLink(ifname, [FakeVf() for _ in range(num_vfs)])

    def set_num_vfs(self, ifindex: int, count: int) -> None:
        """What the PF driver does on a VF count change: VFs come (and go) with
        power-on defaults."""
        self.links[ifindex].vfs = [FakeVf() for _ in range(count)]

    def _ack(self, request: Any, code: int) -> None:
        """NLMSG_ERROR as af_netlink.c netlink_ack sends it: -errno (0 = ACK), then the
        request's header, and on an error the whole request."""
        length = request["header"]["length"]
        original = bytes(request.data[request.offset : request.offset + (length if code else 16)])
        body = struct.pack("<i", -code) + original
        seq = request["header"]["sequence_number"]
        self.loopback_w.send(struct.pack("<IHHII", 16 + len(body), NLMSG_ERROR, 0, seq, 0) + body)

    def _get(self, request: Any) -> None:
        tag = request["header"]["sequence_number"]
        link = self.links.get(request.get("index"))
        if link is None:
            return self._ack(request, errno.ENODEV)
        ext_mask = request.get_attr("IFLA_EXT_MASK") or 0
        self.recorded.get_ext_masks.append(ext_mask)
        self.recorded.get_indexes.append(request.get("index"))
        stats = not ext_mask & RTEXT_FILTER_SKIP_STATS
        vfs = link.vfs
        listed = vfs[: self.reported_vfs] if self.reported_vfs is not None else vfs
        # Encoding 256 VFs takes pyroute2 ~100 ms, a kernel microseconds: each VF's
        # IFLA_VF_INFO is encoded again only when it changed (benchmarks measure the
        # adapter, not this fake), and the reply is spliced from them.
        state = (link.ifname, len(vfs), self.report_spoofchk, stats, tuple(map(_fields, listed)))
        if link.reply is None or link.reply[0] != state:
            link.reply = (state, self._splice(request.get("index"), link, listed, stats))
        data = bytearray(link.reply[1])
        struct.pack_into("<I", data, 8, tag)  # nlmsghdr.nlmsg_seq
        self.loopback_w.send(bytes(data))
        self._ack(request, 0)

    def _splice(self, ifindex: int, link: FakeLink, listed: list[FakeVf], stats: bool) -> bytes:
        """link_message's bytes, built from each VF's cached IFLA_VF_INFO."""
        head = bytearray(
            link_message(ifindex, link.ifname, [], num_vfs=len(link.vfs)).data
        )  # IFLA_VFINFO_LIST is its last attribute, empty: a 4-byte header
        entries = b"".join(
            self._vf_info_bytes(index, vf, stats) for index, vf in enumerate(listed)
        )
        nest = len(head) - 4
        # nla_nest_end stores the length in the u16 nla_len: above 64 KiB it wraps.
        struct.pack_into("<H", head, nest, (4 + len(entries)) & 0xFFFF)
        data = head + entries
        struct.pack_into("<I", data, 0, len(data))
        return bytes(data)

    def _vf_info_bytes(self, index: int, vf: FakeVf, stats: bool) -> bytes:
        key = (index, _fields(vf), self.report_spoofchk, stats)
        cached = self._vf_bytes.get(key)
        if cached is None:
            alone = ifinfmsg()
            alone["header"]["type"] = RTM_NEWLINK
            alone["attrs"] = [
                (
                    "IFLA_VFINFO_LIST",
                    {
                        "attrs": [
                            vf_info(index, vf, report_spoofchk=self.report_spoofchk, stats=stats)
                        ]
                    },
                )
            ]
            alone.encode()
            raw = bytes(alone.data)
            nest = _last_attribute(raw, IFINFO_HEADER)
            cached = self._vf_bytes[key] = raw[nest + 4 :]
        return cached

    def _set(self, request: Any) -> None:
        link = self.links.get(request.get("index"))
        if link is None:
            return self._ack(request, errno.ENODEV)
        code = 0
        if request["change"] & IFF_UP:
            link.up = bool(request["flags"] & IFF_UP)
            self.recorded.admin_changes.append((request.get("index"), link.up))
        vflist = request.get_attr("IFLA_VFINFO_LIST")
        for entry in vflist.get_attrs("IFLA_VF_INFO") if vflist is not None else []:
            attrs = [(name, dict(value)) for name, value in _attrs(entry)]
            self.recorded.set_requests.append(attrs)
            code = self._apply(link.vfs, dict(attrs))
            if code:
                break
        self._ack(request, code)

    def _apply(self, vfs: list[FakeVf], attrs: dict[str, Any]) -> int:
        for name in KERNEL_ORDER:
            if name not in attrs:
                continue
            value = attrs[name]
            if name == "IFLA_VF_VLAN_LIST":
                value = value["IFLA_VF_VLAN_INFO"]
                if value["too_short"]:
                    return errno.EINVAL
                check_name = "IFLA_VF_VLAN_INFO"
            else:
                check_name = name
            code = self.rules.check(check_name, value, len(vfs))
            if code:
                return code
            vf = vfs[value["vf"]]
            if name == "IFLA_VF_MAC":
                vf.mac = value["mac"]
            elif name in ("IFLA_VF_VLAN", "IFLA_VF_VLAN_LIST"):
                vf.vlan, vf.qos = value["vlan"], value["qos"]
                vf.proto = value.get("proto", ETH_P_8021Q)
            elif name == "IFLA_VF_RATE":
                vf.min_rate, vf.max_rate = value["min_tx_rate"], value["max_tx_rate"]
            elif name == "IFLA_VF_SPOOFCHK":
                vf.spoofchk = value["spoofchk"]
            elif name == "IFLA_VF_TRUST":
                vf.trust = value["trust"]
        return 0


#: sizeof(struct nlmsghdr) + sizeof(struct ifinfomsg)
IFINFO_HEADER = 32


def _fields(vf: FakeVf) -> tuple[Any, ...]:
    return tuple(vars(vf).values())


def _last_attribute(data: bytes, offset: int) -> int:
    """Offset of the last netlink attribute from ``offset`` on."""
    last = offset
    while offset < len(data):
        last = offset
        (length,) = struct.unpack_from("<H", data, offset)
        if length < 4:
            raise ValueError(f"malformed attribute at {offset}")
        offset += (length + 3) & ~3
    return last


#: sizeof(struct ifla_vf_vlan_info): vf, vlan, qos (u32), vlan_proto (be16), padding.
VLAN_INFO_SIZE = 16


def _attrs(entry: Any) -> list[tuple[str, Any]]:
    out = []
    for name, value in entry["attrs"]:
        if name == "IFLA_VF_VLAN_LIST":
            info = value.get_attr("IFLA_VF_VLAN_INFO")
            fields = {k: v for k, v in dict(info).items() if not k.startswith("__")}
            # do_setvfinfo: nla_len(attr) < sizeof(struct ifla_vf_vlan_info) -> EINVAL
            fields["too_short"] = info.length - 4 < VLAN_INFO_SIZE
            out.append((name, {"IFLA_VF_VLAN_INFO": fields}))
        else:
            out.append((name, dict(value)))
    return out
