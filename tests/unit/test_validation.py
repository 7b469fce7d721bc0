"""domain.validation: the input checks every front end shares."""

from __future__ import annotations

import pytest

from iovctl.domain.validation import (
    check_name,
    check_num_vfs,
    check_queue_pairs,
    check_rate,
    check_vlan,
    check_weight,
    normalize_mac,
)
from iovctl.errors import InvalidInput


def _code(exc_info: pytest.ExceptionInfo[InvalidInput]) -> str:
    err = exc_info.value
    assert err.exit_code == 2
    assert err.message and err.hint  # names the problem, says what to do
    assert str(err).startswith(f"error[{err.code}]: ")
    return err.code


# -- names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "web1", "Web-1", "db_2", "x.y", "9lives", "a..b", "a" * 64, "A-._z"]
)
def test_good_names_pass_unchanged(name):
    assert check_name("VM", name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        " ",
        "a b",
        "/",
        "a/b",
        "/etc",
        "..",
        "../x",
        ".",
        ".hidden",
        "-rf",
        "_x",
        ";",
        "a;b",
        "$(x)",
        "$x",
        "`id`",
        "a|b",
        "a&b",
        "a>b",
        "a\\b",
        "a'b",
        'a"b',
        "a*",
        "a?",
        "a\nb",
        "web1\n",  # re.match + "$" accepts a trailing newline
        "a\tb",
        "a\x00b",
        "caf\u00e9",
        "a" * 65,
    ],
)
def test_bad_names_are_refused_naming_the_kind(name):
    with pytest.raises(InvalidInput) as exc_info:
        check_name("switch", name)
    assert _code(exc_info) == "invalid-name"
    assert exc_info.value.message.startswith("switch name ")
    assert repr(name) in exc_info.value.message


def test_name_of_none_is_refused():
    with pytest.raises(InvalidInput):
        check_name("VM", None)  # type: ignore[arg-type]


# -- MAC addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("52:54:00:12:34:56", "52:54:00:12:34:56"),
        ("52:54:00:AB:CD:EF", "52:54:00:ab:cd:ef"),
        ("52-54-00-ab-cd-ef", "52:54:00:ab:cd:ef"),
        ("52-54-00-AB-CD-EF", "52:54:00:ab:cd:ef"),
        ("525400abcdef", "52:54:00:ab:cd:ef"),
        ("525400ABCDEF", "52:54:00:ab:cd:ef"),
        ("  52:54:00:12:34:56\n", "52:54:00:12:34:56"),
        ("02:00:00:00:00:01", "02:00:00:00:00:01"),  # locally administered unicast
        ("fe:ff:ff:ff:ff:ff", "fe:ff:ff:ff:ff:ff"),
    ],
)
def test_mac_normalisation(raw, normal):
    assert normalize_mac(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "zz:zz:zz:zz:zz:zz",
        "52:54:00:12:34",
        "52:54:00:12:34:56:78",
        "52:54:00:12:34:5",
        "5254.0012.3456",
        "52:54:00:12:34:5g",
        "525400abcde",
        "525400abcdef0",
        "52:54:00-12:34:5",
        "52::54:00:12:34:56",
        "0x525400abcdef",
    ],
)
def test_malformed_macs(raw):
    with pytest.raises(InvalidInput) as exc_info:
        normalize_mac(raw)
    assert _code(exc_info) == "invalid-mac"
    assert "is not a MAC address" in exc_info.value.message


@pytest.mark.parametrize(
    "raw", ["01:00:5e:00:00:01", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff", "03-00-00-00-00-00"]
)
def test_multicast_and_broadcast_macs(raw):
    with pytest.raises(InvalidInput) as exc_info:
        normalize_mac(raw)
    assert _code(exc_info) == "invalid-mac"
    assert "multicast" in exc_info.value.message


@pytest.mark.parametrize("raw", ["00:00:00:00:00:00", "000000000000", "00-00-00-00-00-00"])
def test_all_zero_mac(raw):
    with pytest.raises(InvalidInput) as exc_info:
        normalize_mac(raw)
    assert _code(exc_info) == "invalid-mac"
    assert "all-zero" in exc_info.value.message


def test_mac_errors_name_what_was_checked():
    with pytest.raises(InvalidInput) as exc_info:
        normalize_mac("nope", "adapter eth0 MAC")
    assert exc_info.value.message.startswith("adapter eth0 MAC 'nope'")


# -- numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("vlan", [1, 2, 100, 4093, 4094])
def test_vlan_range(vlan):
    assert check_vlan(vlan) == vlan


@pytest.mark.parametrize("vlan", [-1, 0, 4095, 4096, 65535])
def test_vlan_out_of_range(vlan):
    with pytest.raises(InvalidInput) as exc_info:
        check_vlan(vlan, "primary VLAN")
    assert _code(exc_info) == "invalid-vlan"
    assert exc_info.value.message.startswith(f"primary VLAN {vlan} ")


@pytest.mark.parametrize("weight", [0, 1, 50, 100])
def test_weight_range(weight):
    assert check_weight(weight) == weight


@pytest.mark.parametrize("weight", [-1, 101, 1000])
def test_weight_out_of_range(weight):
    with pytest.raises(InvalidInput) as exc_info:
        check_weight(weight)
    assert _code(exc_info) == "invalid-weight"
    assert str(weight) in exc_info.value.message


@pytest.mark.parametrize("count", [1, 16, 4096])
def test_queue_pairs_range(count):
    assert check_queue_pairs(count) == count


@pytest.mark.parametrize("count", [-1, 0, 4097])
def test_queue_pairs_out_of_range(count):
    with pytest.raises(InvalidInput) as exc_info:
        check_queue_pairs(count)
    assert _code(exc_info) == "invalid-queue-pairs"


@pytest.mark.parametrize("rate", [1, 1000, 10_000_000])
def test_rate_range(rate):
    assert check_rate(rate) == rate


@pytest.mark.parametrize("rate", [-1, 0, 10_000_001])
def test_rate_out_of_range(rate):
    with pytest.raises(InvalidInput) as exc_info:
        check_rate(rate)
    assert _code(exc_info) == "invalid-rate"


@pytest.mark.parametrize("count", [0, 1, 2048])
def test_vf_count(count):
    assert check_num_vfs("enp1s0", count) == count


def test_negative_vf_count_names_the_adapter():
    with pytest.raises(InvalidInput) as exc_info:
        check_num_vfs("enp1s0", -1)
    assert _code(exc_info) == "invalid-vf-count"
    assert "enp1s0" in exc_info.value.message
