"""NetlinkVfs: 256-VF replies, the one-request write and its rules, errno attribution."""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from iovctl.adapters.linux.netlink import (
    IFINFO_HEADER,
    RTEXT_FILTER_SKIP_STATS,
    RTEXT_FILTER_VF,
    VF_INFO_EXT_MASK,
    NetlinkVfs,
    VfInfoList,
    VfReport,
    _attributes,
    parse_vf_reports,
    plan_vf_request,
    refusal_error,
)
from iovctl.domain.drivers import unsupported_settings
from iovctl.domain.model import (
    SCRUBBED,
    LinkState,
    VfSetting,
    VfSettings,
    VfStats,
    VlanProtocol,
)
from iovctl.errors import HardwareError, InvalidInput, UnsupportedVfSetting

from .fake_rtnl import ETH_P_8021Q, FakeRtnl, FakeVf, IgbRules, link_message

V = VfSetting
IGB = unsupported_settings("igb")
TENANT = SCRUBBED.with_(
    mac="52:54:00:aa:bb:01", vlan=100, qos=3, spoof_check=False, trust=True, max_rate=500
)


def netlink_over(fake: FakeRtnl) -> NetlinkVfs:
    return NetlinkVfs(lambda: IPRoute(use_socket=fake))


def decode(data: bytes) -> Any:
    msg = ifinfmsg(data)
    msg.decode()
    return msg


def numbered_vfs(count: int) -> list[FakeVf]:
    return [
        FakeVf(
            mac=f"52:54:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
            vlan=i + 1,
            qos=i % 8,
            max_rate=i * 10,
            spoofchk=i % 2,
            trust=(i + 1) % 2,
            link_state=i % 3,
        )
        for i in range(count)
    ]


def check_numbered(reports: list[VfReport], count: int) -> None:
    assert [r.index for r in reports] == list(range(count))
    for i, report in enumerate(reports):
        assert report.settings == VfSettings(
            mac=f"52:54:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
            vlan=i + 1,
            qos=i % 8,
            spoof_check=bool(i % 2),
            trust=bool((i + 1) % 2),
            max_rate=i * 10,
            link_state=[LinkState.AUTO, LinkState.ENABLE, LinkState.DISABLE][i % 3],
        )


# ---------------------------------------------------------------------------- 256 VFs


def test_256_vf_message_decodes_through_the_adapter_parser() -> None:
    """A real RTM_NEWLINK with 256 IFLA_VF_INFO, encoded by pyroute2's ifinfmsg."""
    message = link_message(3, "enp1s0", numbered_vfs(256))

    # Past every historical fixed buffer (16 KiB pyroute2 rcvsize, 32 KiB, 108/127 VFs),
    # and below the u16 nest limit because stats are skipped.
    assert 40_000 < len(message.data) < 65_535

    check_numbered(parse_vf_reports(decode(message.data)), 256)


def test_256_vfs_read_through_a_real_ipr_socket() -> None:
    """The whole read path: pyroute2 request, one datagram of ~41 KB, our parser."""
    fake = FakeRtnl(256)
    fake.vfs = numbered_vfs(256)

    reports = netlink_over(fake).read(3, "enp1s0")

    check_numbered(reports, 256)
    assert fake.recorded.get_ext_masks == [RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS]


def test_ext_mask_skips_stats() -> None:
    assert VF_INFO_EXT_MASK == 0b1001


def test_short_vf_list_is_an_error_not_fewer_vfs() -> None:
    fake = FakeRtnl(256, reported_vfs=108)
    with pytest.raises(HardwareError) as caught:
        netlink_over(fake).read(3, "enp1s0")
    assert caught.value.code == "vf-info-incomplete"
    assert "108 of the 256" in caught.value.message


def test_pf_without_vfs() -> None:
    assert netlink_over(FakeRtnl(0)).read(3, "enp1s0") == []


def _attribute_offset(data: bytes | bytearray, start: int, end: int, kind: int) -> int:
    """Offset of the first netlink attribute of type ``kind`` in data[start:end]."""
    offset = start
    while offset < end:
        length, found = struct.unpack_from("<HH", data, offset)
        if found & 0x3FFF == kind:
            return offset
        offset += (length + 3) & ~3
    raise AssertionError(f"no attribute {kind}")


def test_unknown_vf_attributes_are_ignored() -> None:
    """Kernels since 5.x add IFLA_VF_BROADCAST (13), which pyroute2 0.9 does not name."""
    data = bytearray(link_message(3, "enp1s0", [FakeVf(mac="52:54:00:00:00:07")]).data)
    vfinfo_list = _attribute_offset(data, 32, len(data), 22)  # after nlmsghdr + ifinfomsg
    vf_info = vfinfo_list + 4
    broadcast = struct.pack("<HH", 36, 13) + b"\xff" * 6 + bytes(26)
    data[vf_info + 4 : vf_info + 4] = broadcast  # first attribute inside IFLA_VF_INFO
    struct.pack_into("<I", data, 0, len(data))
    for offset in (vfinfo_list, vf_info):
        (length,) = struct.unpack_from("<H", data, offset)
        struct.pack_into("<H", data, offset, length + len(broadcast))

    message = decode(bytes(data))
    (entry,) = message.get_attr("IFLA_VFINFO_LIST").get_attrs("IFLA_VF_INFO")
    assert len(entry["attrs"]) == 10  # the broadcast one is there, under no known name

    (report,) = parse_vf_reports(message)
    assert report.settings.mac == "52:54:00:00:00:07"


def test_unreported_spoof_check_and_trust() -> None:
    """rtnl_fill_vfinfo presets spoofchk and trust to -1 for drivers that don't say."""
    fake = FakeRtnl(1, report_spoofchk=False)
    (report,) = netlink_over(fake).read(3, "enp1s0")
    assert V.SPOOF_CHECK in report.unreported
    assert report.settings.spoof_check is True  # the scrubbed default stands in
    assert report.holds(V.SPOOF_CHECK, SCRUBBED) is None


def test_8021ad_is_read_from_the_vlan_list() -> None:
    message = link_message(3, "enp1s0", [FakeVf(vlan=5, proto=0x88A8)])
    (report,) = parse_vf_reports(decode(message.data))
    assert report.settings.vlan_protocol is VlanProtocol.DOT1AD


# ---------------------------------------------------------------------------- request plan


def sent(request: Any) -> dict[str, dict[str, Any]]:
    return {attribute.name: attribute.value for attribute in request.attributes}


def test_scrubbing_an_igb_vf_never_sends_link_state() -> None:
    request = plan_vf_request(0, SCRUBBED, IGB)
    assert "IFLA_VF_LINK_STATE" not in request.names()
    assert V.LINK_STATE not in request.settings
    assert V.MIN_RATE not in request.settings
    # The settings igb supports travel even at their defaults: that is what scrubs.
    assert sent(request) == {
        "IFLA_VF_MAC": {"vf": 0, "mac": "00:00:00:00:00:00"},
        "IFLA_VF_VLAN": {"vf": 0, "vlan": 0, "qos": 0},
        "IFLA_VF_RATE": {"vf": 0, "min_tx_rate": 0, "max_tx_rate": 0},
        "IFLA_VF_SPOOFCHK": {"vf": 0, "spoofchk": 1},
        "IFLA_VF_TRUST": {"vf": 0, "trust": 0},
    }


@pytest.mark.parametrize(
    ("desired", "present", "absent"),
    [
        (SCRUBBED.with_(link_state=LinkState.DISABLE), {"IFLA_VF_LINK_STATE"}, set()),
        (
            SCRUBBED.with_(min_rate=10, max_rate=100),
            {"IFLA_VF_RATE"},
            {"IFLA_VF_LINK_STATE"},
        ),
        (
            SCRUBBED.with_(vlan_protocol=VlanProtocol.DOT1AD, vlan=7),
            {"IFLA_VF_VLAN_LIST"},
            {"IFLA_VF_LINK_STATE", "IFLA_VF_VLAN"},
        ),
    ],
)
def test_unsupported_settings_travel_when_not_default(
    desired: VfSettings, present: set[str], absent: set[str]
) -> None:
    names = set(plan_vf_request(2, desired, IGB).names())
    assert present <= names
    assert not absent & names


def test_unknown_driver_gets_every_setting() -> None:
    request = plan_vf_request(0, SCRUBBED, frozenset())
    assert sent(request)["IFLA_VF_LINK_STATE"] == {"vf": 0, "link_state": 0}
    assert set(request.settings) == set(V) - {V.QUERY_RSS, V.PVLAN}


def test_8021ad_uses_the_vlan_list() -> None:
    desired = SCRUBBED.with_(vlan=7, qos=2, vlan_protocol=VlanProtocol.DOT1AD)
    request = plan_vf_request(0, desired, frozenset())
    assert request.names()[:2] == ["IFLA_VF_MAC", "IFLA_VF_VLAN_LIST"]
    assert sent(request)["IFLA_VF_VLAN_LIST"] == {
        "attrs": [("IFLA_VF_VLAN_INFO", {"vf": 0, "vlan": 7, "qos": 2, "proto": 0x88A8})]
    }


def test_vlan_info_has_the_kernels_size() -> None:
    """struct ifla_vf_vlan_info is 16 bytes; pyroute2's own encoding is 14."""
    # pyroute2's own classes compiled first: the subclasses must not inherit their tables.
    link_message(3, "enp1s0", [FakeVf(vlan=1, proto=0x88A8)])
    desired = SCRUBBED.with_(vlan=7, vlan_protocol=VlanProtocol.DOT1AD)
    message = plan_vf_request(0, desired, frozenset()).message(3)
    message.encode()
    info = _attribute_offset(message.data, 32, len(message.data), 22) + 4  # IFLA_VF_INFO
    vlan_list = _attribute_offset(message.data, info + 4, len(message.data), 12)
    length, kind = struct.unpack_from("<HH", message.data, vlan_list + 4)
    assert (kind, length) == (1, 4 + 16)
    vf, vlan, qos = struct.unpack_from("<III", message.data, vlan_list + 8)
    (proto,) = struct.unpack_from(">H", message.data, vlan_list + 20)
    assert (vf, vlan, qos, proto) == (0, 7, 0, 0x88A8)


def test_settings_the_vf_already_holds_stay_out() -> None:
    current = VfReport(0, TENANT.with_(max_rate=0))
    request = plan_vf_request(0, TENANT, IGB, current)
    assert sent(request) == {"IFLA_VF_RATE": {"vf": 0, "min_tx_rate": 0, "max_tx_rate": 500}}


def test_unreported_settings_are_always_sent() -> None:
    current = VfReport(0, SCRUBBED, frozenset({V.SPOOF_CHECK}))
    request = plan_vf_request(0, SCRUBBED, IGB, current)
    assert sent(request) == {"IFLA_VF_SPOOFCHK": {"vf": 0, "spoofchk": 1}}


def test_8021ad_reaches_a_driver_that_takes_it() -> None:
    """Through a kernel that checks the VLAN info length, as Debian's 6.1.192 does."""
    fake = FakeRtnl(2, rules=IgbRules(accept_8021ad=True))
    desired = SCRUBBED.with_(vlan=7, qos=1, vlan_protocol=VlanProtocol.DOT1AD)
    netlink_over(fake).write(3, 1, desired, adapter="enp1s0", driver="ice")
    assert (fake.vfs[1].vlan, fake.vfs[1].qos, fake.vfs[1].proto) == (7, 1, 0x88A8)
    assert netlink_over(fake).read(3)[1].settings == desired


# ---------------------------------------------------------------------------- writing


def test_write_round_trip_in_one_request() -> None:
    fake = FakeRtnl(4)
    netlink = netlink_over(fake)

    netlink.write(3, 2, TENANT, adapter="enp1s0", driver="igb", unsupported=IGB)

    assert len(fake.recorded.set_requests) == 1
    assert fake.vfs[2] == FakeVf(
        mac="52:54:00:aa:bb:01", vlan=100, qos=3, max_rate=500, spoofchk=0, trust=1
    )
    assert netlink.read(3)[2].settings == TENANT


def test_write_sends_vf_attributes_pyroute2_encodes() -> None:
    fake = FakeRtnl(4)
    netlink_over(fake).write(3, 1, TENANT, adapter="enp1s0", driver="igb", unsupported=IGB)
    (sent,) = fake.recorded.set_requests
    assert dict(sent) == {
        "IFLA_VF_MAC": {"vf": 1, "mac": "52:54:00:aa:bb:01"},
        "IFLA_VF_VLAN": {"vf": 1, "vlan": 100, "qos": 3},
        "IFLA_VF_RATE": {"vf": 1, "min_tx_rate": 0, "max_tx_rate": 500},
        "IFLA_VF_SPOOFCHK": {"vf": 1, "spoofchk": 0},
        "IFLA_VF_TRUST": {"vf": 1, "trust": 1},
    }


def test_scrub_of_an_already_clean_vf_sends_nothing() -> None:
    fake = FakeRtnl(2)
    request = netlink_over(fake).write(
        3, 0, SCRUBBED, adapter="enp1s0", driver="igb", unsupported=IGB
    )
    assert request.empty
    assert fake.recorded.set_requests == []


def test_scrub_with_link_down_does_not_touch_the_rate() -> None:
    """igb_ndo_set_vf_bw refuses everything while the link is down."""
    fake = FakeRtnl(2, rules=IgbRules(link_up=False))
    fake.vfs[0] = FakeVf(mac="52:54:00:aa:bb:01", vlan=9, trust=1)
    netlink_over(fake).write(3, 0, SCRUBBED, adapter="enp1s0", driver="igb", unsupported=IGB)
    assert fake.vfs[0] == FakeVf()


REFUSALS = [
    ({"link_state": LinkState.DISABLE}, "link state", errno.EOPNOTSUPP),
    ({"link_state": LinkState.ENABLE}, "link state", errno.EOPNOTSUPP),
    ({"min_rate": 100}, "min rate", errno.EINVAL),
    ({"vlan_protocol": VlanProtocol.DOT1AD}, "802.1ad VLAN protocol", errno.EPROTONOSUPPORT),
]


@pytest.mark.parametrize(("change", "label", "code"), REFUSALS)
def test_table_refusals_send_nothing_and_change_nothing(
    change: dict[str, Any], label: str, code: int
) -> None:
    fake = FakeRtnl(4)
    with pytest.raises(UnsupportedVfSetting) as caught:
        netlink_over(fake).write(
            3, 1, TENANT.with_(**change), adapter="enp1s0", driver="igb", unsupported=IGB
        )
    error = caught.value
    assert (
        str(error)
        == f"error[vf-setting-unsupported]: the igb driver does not support {label} on VFs"
    )
    assert (error.driver, error.errno) == ("igb", code)
    assert fake.recorded.set_requests == []
    assert fake.vfs[1] == FakeVf()


@pytest.mark.parametrize(("change", "label", "code"), REFUSALS)
def test_kernel_refusals_are_attributed_in_one_request(
    change: dict[str, Any], label: str, code: int
) -> None:
    """Without the table (a driver it does not know), igb's own errno is translated."""
    fake = FakeRtnl(4)
    desired = SCRUBBED.with_(mac="52:54:00:ab:cd:02", trust=True, **change)
    with pytest.raises(UnsupportedVfSetting) as caught:
        netlink_over(fake).write(3, 1, desired, adapter="enp1s0", driver="igb")
    assert caught.value.setting == label
    assert caught.value.errno == code
    assert len(fake.recorded.set_requests) == 1  # no retry, no elimination by writing


def test_kernel_refusal_inside_a_two_setting_attribute_is_ambiguous() -> None:
    """IFLA_VF_RATE carries min and max: EINVAL can be either (igb: min; others: max)."""
    fake = FakeRtnl(4)
    with pytest.raises(HardwareError) as caught:
        netlink_over(fake).write(3, 1, TENANT.with_(min_rate=100), adapter="enp1s0", driver="igb")
    assert caught.value.code == "vf-settings-rejected"
    assert caught.value.message.endswith("among: max rate, min rate")


def test_unknown_driver_refusal_is_attributed_by_reading_back() -> None:
    """No table row: the first attribute the VF does not hold afterwards is the culprit."""
    fake = FakeRtnl(4)  # behaves like igb, but we call the driver "acme"
    with pytest.raises(UnsupportedVfSetting) as caught:
        netlink_over(fake).write(
            3, 0, TENANT.with_(link_state=LinkState.DISABLE), adapter="enp1s0", driver="acme"
        )
    assert caught.value.setting == "link state"
    # Everything before it in do_setvfinfo's order was applied.
    assert fake.vfs[0].mac == TENANT.mac


def test_einval_on_a_supported_setting_is_a_rejected_value() -> None:
    fake = FakeRtnl(4, rules=IgbRules(link_up=False))
    with pytest.raises(HardwareError) as caught:
        netlink_over(fake).write(3, 0, TENANT, adapter="enp1s0", driver="igb", unsupported=IGB)
    error = caught.value
    assert not isinstance(error, UnsupportedVfSetting)
    assert error.code == "vf-setting-rejected"
    assert "the igb driver rejected max rate 500" in error.message
    assert "link must be up" in error.hint


def test_vf_index_out_of_range_is_checked_before_sending() -> None:
    fake = FakeRtnl(4)
    with pytest.raises(HardwareError) as caught:
        netlink_over(fake).write(3, 4, TENANT, adapter="enp1s0", driver="igb", unsupported=IGB)
    assert caught.value.code == "vf-not-found"
    assert caught.value.errno == errno.EINVAL
    assert fake.recorded.set_requests == []


@pytest.mark.parametrize("bad", [{"qos": 8}, {"vlan": 4096}, {"vlan": -1}])
def test_vlan_and_qos_out_of_range_never_reach_the_driver(bad: dict[str, Any]) -> None:
    fake = FakeRtnl(4)
    with pytest.raises(HardwareError) as caught:
        netlink_over(fake).write(3, 0, TENANT.with_(**bad), adapter="enp1s0", driver="igb")
    assert caught.value.code == "vf-setting-invalid"
    assert caught.value.errno == errno.EINVAL
    assert "igb" in caught.value.message and "enp1s0" in caught.value.message
    assert fake.recorded.set_requests == []


@pytest.mark.parametrize(
    "bad",
    [{"max_rate": 10, "min_rate": 20}, {"mac": "52:54:00:aa:bb"}, {"max_rate": -1}],
)
def test_values_no_driver_accepts_are_invalid_input(bad: dict[str, Any]) -> None:
    fake = FakeRtnl(4)
    with pytest.raises(InvalidInput):
        netlink_over(fake).write(3, 0, TENANT.with_(**bad), adapter="enp1s0", driver="igb")
    assert fake.recorded.set_requests == []


def test_unknown_ifindex() -> None:
    with pytest.raises(HardwareError) as caught:
        netlink_over(FakeRtnl(1)).read(99, "gone0")
    assert caught.value.code == "vf-info-failed"


# ---------------------------------------------------------------------------- attribution


def _request(desired: VfSettings, unsupported: frozenset[VfSetting] = frozenset()) -> Any:
    return plan_vf_request(0, desired, unsupported)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EPERM, "permission-denied"),
        (errno.ENODEV, "adapter-gone"),
        (errno.EIO, "vf-settings-failed"),
    ],
)
def test_other_errnos(code: int, expected: str) -> None:
    error = refusal_error(
        code, adapter="enp1s0", driver="igb", request=_request(TENANT), desired=TENANT, after=None
    )
    assert error.code == expected
    assert error.errno == code


def test_unattributable_refusal_lists_the_candidates() -> None:
    """Unknown driver, no read-back: several settings could be the one."""
    error = refusal_error(
        errno.EOPNOTSUPP,
        adapter="enp1s0",
        driver="acme",
        request=_request(TENANT),
        desired=TENANT,
        after=None,
    )
    assert error.code == "vf-settings-rejected"
    assert "MAC address" in error.message and "trust" in error.message


def test_single_setting_request_is_attributed_without_read_back() -> None:
    request = plan_vf_request(0, TENANT, frozenset(), VfReport(0, TENANT.with_(trust=False)))
    error = refusal_error(
        errno.EOPNOTSUPP,
        adapter="enp1s0",
        driver="acme",
        request=request,
        desired=TENANT,
        after=None,
    )
    assert isinstance(error, UnsupportedVfSetting)
    assert error.setting == "trust"


def test_unreported_earlier_setting_keeps_it_ambiguous() -> None:
    """Spoof check unreported before the first mismatch: it could be the culprit."""
    desired = TENANT.with_(link_state=LinkState.DISABLE)
    after = VfReport(
        0, desired.with_(link_state=LinkState.AUTO, trust=False), frozenset({V.SPOOF_CHECK})
    )
    error = refusal_error(
        errno.EOPNOTSUPP,
        adapter="enp1s0",
        driver="acme",
        request=_request(desired),
        desired=desired,
        after=after,
    )
    assert error.code == "vf-settings-rejected"


def test_table_beats_read_back_for_known_drivers() -> None:
    desired = TENANT.with_(min_rate=10)
    after = VfReport(0, TENANT)  # everything before the rate applied, min rate did not
    error = refusal_error(
        errno.EINVAL,
        adapter="enp1s0",
        driver="igb",
        request=_request(desired, IGB),
        desired=desired,
        after=after,
        unsupported=IGB,
    )
    assert isinstance(error, UnsupportedVfSetting)
    assert error.setting == "min rate"


def test_table_refusal_needs_no_read_back() -> None:
    desired = TENANT.with_(link_state=LinkState.DISABLE)
    error = refusal_error(
        errno.EOPNOTSUPP,
        adapter="enp1s0",
        driver="igb",
        request=_request(desired, IGB),
        desired=desired,
        after=None,
        unsupported=IGB,
    )
    assert isinstance(error, UnsupportedVfSetting)
    assert error.setting == "link state"


def test_proto_constant() -> None:
    assert ETH_P_8021Q == 0x8100


_fake_vf = st.builds(
    FakeVf,
    mac=st.tuples(*[st.integers(0, 255)] * 6).map(lambda o: ":".join(f"{b:02x}" for b in o)),
    vlan=st.integers(0, 4095),
    qos=st.integers(0, 7),
    proto=st.sampled_from([ETH_P_8021Q, 0x88A8]),
    min_rate=st.integers(0, 2**32 - 1),
    max_rate=st.integers(0, 2**32 - 1),
    spoofchk=st.sampled_from([0, 1, 0xFFFFFFFF]),
    link_state=st.integers(0, 2),
    trust=st.sampled_from([0, 1, 0xFFFFFFFF]),
)


@settings(max_examples=60, deadline=None)
@given(vfs=st.lists(_fake_vf, max_size=12), data=st.data())
def test_byte_parser_reads_what_pyroute2_encoded(vfs: list[FakeVf], data: Any) -> None:
    """The struct walk over the reply's bytes against pyroute2's own encoder, and one
    VF parsed alone against the whole list."""
    listing = VfInfoList.of(decode(link_message(3, "enp1s0", vfs).data))
    reports = listing.reports()
    for index, (vf, report) in enumerate(zip(vfs, reports, strict=True)):
        unreported = {
            setting
            for setting, value in ((V.SPOOF_CHECK, vf.spoofchk), (V.TRUST, vf.trust))
            if value == 0xFFFFFFFF
        }
        assert report.index == index and report.unreported == unreported
        expected = SCRUBBED.with_(
            mac=vf.mac,
            vlan=vf.vlan,
            qos=vf.qos,
            vlan_protocol=VlanProtocol.DOT1AD if vf.proto == 0x88A8 else VlanProtocol.DOT1Q,
            min_rate=vf.min_rate,
            max_rate=vf.max_rate,
            link_state=[LinkState.AUTO, LinkState.ENABLE, LinkState.DISABLE][vf.link_state],
            **{
                field: bool(value)
                for field, value in (("spoof_check", vf.spoofchk), ("trust", vf.trust))
                if value != 0xFFFFFFFF
            },
        )
        assert report.settings == expected
    if vfs:
        index = data.draw(st.integers(0, len(vfs) - 1))
        assert (
            VfInfoList.of(decode(link_message(3, "enp1s0", vfs).data)).report(index)
            == (reports[index])
        )
    assert listing.report(len(vfs)) is None


# ---------------------------------------------------------------------------- VF counters


def test_vf_stats_of_256_vfs_survive_the_wrapped_nest_length() -> None:
    """With IFLA_VF_STATS a 256-VF list is ~75 KB: its u16 nest length wraps (as
    nla_nest_end leaves it) and the entries are walked by IFLA_NUM_VF instead."""
    fake = FakeRtnl(256)
    for i, vf in enumerate(fake.vfs):
        vf.rx_packets, vf.rx_bytes, vf.tx_packets, vf.tx_bytes = i, 1000 * i, 2 * i, 2**40 + i
        vf.rx_dropped, vf.tx_dropped, vf.broadcast = 3 * i, 4 * i, 99
    stats = NetlinkVfs(lambda: IPRoute(use_socket=fake)).stats(3, "enp1s0")

    assert fake.recorded.get_ext_masks == [RTEXT_FILTER_VF]
    assert sorted(stats) == list(range(256))
    assert stats[255] == VfStats(
        receive_bytes=255_000,
        receive_packets=255,
        receive_dropped=765,
        transmit_bytes=2**40 + 255,
        transmit_packets=510,
        transmit_dropped=1020,
    )
    reply = fake.links[3].reply
    assert reply is not None
    data = reply[1]
    nest = next(s - 4 for k, s, _ in _attributes(data, IFINFO_HEADER, len(data)) if k == 22)
    (nest_length,) = struct.unpack_from("<H", data, nest)
    assert len(data) - nest > 0xFFFF and nest_length == (len(data) - nest) & 0xFFFF


def test_vf_stats_missing_an_entry_are_refused() -> None:
    fake = FakeRtnl(4, reported_vfs=3)
    with pytest.raises(HardwareError) as info:
        NetlinkVfs(lambda: IPRoute(use_socket=fake)).stats(3, "enp1s0")
    assert info.value.code == "vf-info-incomplete"
    assert "3 of the 4 VFs of enp1s0" in info.value.message


def test_settings_reads_still_skip_the_stats() -> None:
    fake = FakeRtnl(2)
    NetlinkVfs(lambda: IPRoute(use_socket=fake)).read(3, "enp1s0")
    assert fake.recorded.get_ext_masks == [RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS]
