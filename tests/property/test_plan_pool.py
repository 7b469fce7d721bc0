"""Properties of the pure arbitration (domain.allocation.plan_pool)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iovctl.domain.allocation import Claim, Grant, Pool, Preemption, plan_pool


@st.composite
def pools(draw: st.DrawFn) -> Pool:
    n_vfs = draw(st.integers(0, 6))
    per_vf = draw(st.integers(1, 4))
    capacity = draw(st.integers(0, n_vfs * per_vf + 2))
    n_claims = draw(st.integers(0, 10))
    claims = []
    free_vfs = list(range(n_vfs))
    qp_left = capacity
    seqs = draw(st.lists(st.integers(1, 1000), min_size=n_claims, max_size=n_claims, unique=True))
    for i in range(n_claims):
        weight = draw(st.integers(1, 100))
        requested = draw(st.integers(1, 5))
        vf = None
        qps = 0
        # Some claims already hold a VF (a valid earlier state).
        if free_vfs and qp_left >= 1 and draw(st.booleans()):
            vf = free_vfs.pop(draw(st.integers(0, len(free_vfs) - 1)))
            qps = min(requested, per_vf, qp_left)
            qp_left -= qps
        claims.append(Claim(i, weight, seqs[i], requested, vf, qps))
    return Pool(tuple(range(n_vfs)), capacity, per_vf, tuple(claims))


def _final(pool: Pool) -> dict[int, tuple[int | None, int]]:
    state = {c.nic_id: (c.vf_index, c.queue_pairs) for c in pool.claims}
    for step in plan_pool(pool).steps:
        if isinstance(step, Preemption):
            assert state[step.nic_id][0] == step.vf_index
            state[step.nic_id] = (None, 0)
        else:
            assert state[step.nic_id][0] is None, "granted a VF to a NIC that holds one"
            assert step.vf_index not in {vf for vf, _ in state.values()}, "VF granted twice"
            state[step.nic_id] = (step.vf_index, step.queue_pairs)
    return state


@given(pools())
def test_no_vf_held_twice_and_within_capacity(pool: Pool) -> None:
    state = _final(pool)
    held = [vf for vf, _ in state.values() if vf is not None]
    assert len(held) == len(set(held))
    assert set(held) <= set(pool.vf_indexes)
    assert sum(q for _, q in state.values()) <= pool.queue_pair_capacity
    by_id = {c.nic_id: c for c in pool.claims}
    for nic_id, (vf, qps) in state.items():
        if vf is not None:
            assert 1 <= qps <= min(by_id[nic_id].queue_pairs_requested, pool.max_queue_pairs_per_vf)


@given(pools())
def test_weight_order_and_work_conservation(pool: Pool) -> None:
    state = _final(pool)
    by_id = {c.nic_id: c for c in pool.claims}
    holders = [by_id[i] for i, (vf, _) in state.items() if vf is not None]
    waiters = [by_id[i] for i, (vf, _) in state.items() if vf is None]
    if holders and waiters:
        # Nobody waits while a strictly lower weight holds a VF.
        assert max(w.weight for w in waiters) <= min(h.weight for h in holders)
    if waiters:
        free = len(pool.vf_indexes) - len(holders)
        qp_left = pool.queue_pair_capacity - sum(q for _, q in state.values())
        assert free == 0 or qp_left == 0, "an eligible NIC waits while a VF is free"


@given(pools())
def test_holders_only_lose_to_strictly_higher_weight(pool: Pool) -> None:
    by_id = {c.nic_id: c for c in pool.claims}
    for step in plan_pool(pool).steps:
        if isinstance(step, Preemption):
            assert by_id[step.by_nic_id].weight > by_id[step.nic_id].weight


@given(pools())
def test_replanning_the_result_changes_nothing(pool: Pool) -> None:
    state = _final(pool)
    again = Pool(
        pool.vf_indexes,
        pool.queue_pair_capacity,
        pool.max_queue_pairs_per_vf,
        tuple(
            Claim(c.nic_id, c.weight, c.seq, c.queue_pairs_requested, *state[c.nic_id])
            for c in pool.claims
        ),
    )
    assert plan_pool(again).steps == []


def test_equal_weight_is_first_come_first_served() -> None:
    claims = (Claim(1, 50, seq=2), Claim(2, 50, seq=1), Claim(3, 50, seq=3))
    plan = plan_pool(Pool((0,), 8, 1, claims))
    assert plan.steps == [Grant(2, 0, 1)]
    assert set(plan.waiting) == {1, 3}


def test_victim_is_lowest_weight_then_latest_comer() -> None:
    claims = (
        Claim(1, 10, seq=1, vf_index=0, queue_pairs=1),
        Claim(2, 10, seq=2, vf_index=1, queue_pairs=1),
        Claim(3, 20, seq=3),
    )
    plan = plan_pool(Pool((0, 1), 8, 1, claims))
    assert plan.steps == [Preemption(2, 1, 3), Grant(3, 1, 1)]
    assert plan.waiting == {2: plan.waiting[2]}
