"""The journal's steps: what they touch, and a JSON round trip for every kind."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iovctl.domain.model import (
    LinkState,
    NicConfig,
    PrivateVlan,
    PvlanMode,
    VfSettings,
    VlanProtocol,
    VmTemplate,
)
from iovctl.domain.steps import (
    STEP_TYPES,
    AttachVf,
    ScrubVf,
    SetNumVfs,
    Step,
    StopVm,
    adapter_key,
    keys_meet,
    step_from_json,
    step_to_json,
    vf_key,
    vm_key,
)

names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)
pvlans = st.none() | st.builds(
    PrivateVlan, st.sampled_from(PvlanMode), st.integers(1, 4094), st.none() | st.integers(1, 4094)
)
configs = st.builds(
    NicConfig,
    switch=names,
    mac=names,
    iov_weight=st.integers(0, 100),
    iov_queue_pairs_requested=st.integers(1, 64),
    vlan=st.none() | st.integers(1, 4094),
    pvlan=pvlans,
    max_rate=st.none() | st.integers(1, 100_000),
    allow_mac_spoofing=st.booleans(),
    trust=st.booleans(),
)
settings = st.builds(
    VfSettings,
    mac=names,
    vlan=st.integers(0, 4095),
    qos=st.integers(0, 7),
    vlan_protocol=st.sampled_from(VlanProtocol),
    spoof_check=st.booleans(),
    trust=st.booleans(),
    max_rate=st.integers(0, 100_000),
    min_rate=st.integers(0, 100_000),
    link_state=st.sampled_from(LinkState),
    pvlan=pvlans,
)
templates = st.builds(
    VmTemplate,
    memory_mib=st.integers(64, 1 << 22),
    vcpus=st.integers(1, 512),
    disk=st.none() | names,
    kernel=st.none() | names,
    initrd=st.none() | names,
    cmdline=st.none() | st.text(max_size=40),
)


def _any_step(cls: type[Step]) -> st.SearchStrategy[Step]:
    return st.builds(
        cls,
        **{
            name: {
                "config": configs,
                "previous": st.none() | configs,
                "settings": settings,
                "template": templates,
                "count": st.integers(0, 256),
                "restore": st.integers(0, 256),
                "index": st.integers(0, 255),
                "nic_id": st.integers(1, 10_000),
                "vm": names if cls is not ScrubVf else st.none() | names,
            }.get(name, names)
            for name in cls.__dataclass_fields__
            if name not in ("kind", "name")
        },
    )


@given(st.sampled_from(sorted(STEP_TYPES.values(), key=lambda c: c.name)).flatmap(_any_step))
def test_every_step_survives_the_journal(step: Step) -> None:
    assert step_from_json(step_to_json(step)) == step


def test_what_steps_touch_meets_as_the_journal_needs() -> None:
    assert keys_meet(adapter_key("pf0"), vf_key("pf0", 3))
    assert not keys_meet(adapter_key("pf0"), vf_key("pf1", 3))
    assert not keys_meet(adapter_key("pf1"), vf_key("pf10", 3))
    attach = AttachVf("pf0", 3, "web", "nic0", 1)
    assert attach.touches() == {vf_key("pf0", 3), vm_key("web")}
    assert any(keys_meet(a, b) for a in attach.touches() for b in SetNumVfs("pf0", 2).touches())
    assert not any(keys_meet(a, b) for a in attach.touches() for b in StopVm("db").touches())
