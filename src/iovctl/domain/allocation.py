"""VF arbitration for one uplink's pool: who gets a VF, who waits, who is preempted.

Hyper-V documents ``IovWeight`` only as "relative importance when assigning IOV
resources"; iovctl's rule is published here:

1. Only *claims* compete: NICs of running VMs with weight > 0 on a working IOV
   switch (the caller decides eligibility).
2. Waiting claims are served best first: higher weight, then earlier ``seq`` (the
   moment the NIC became eligible: first come, first served among equals).
3. A waiter gets a free VF if one exists and at least one queue pair is left.
   Queue pairs granted = min(requested, per-VF limit, queue pairs left).
4. Otherwise, if the lowest holder (lowest weight, then latest ``seq``) has a
   weight strictly below the waiter's, the holder is preempted: its VF is
   released (and scrubbed by the caller) and given to the waiter.
5. Holders are stable: nobody loses a VF except by rule 4.

Pure: no I/O. The caller loads one pool, applies the plan in order (preemptions
before grants; scrub each released VF before it is granted again).
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass, field


class WaitReason(enum.StrEnum):
    VFS_EXHAUSTED = "vfs-exhausted"
    QUEUE_PAIRS_EXHAUSTED = "queue-pairs-exhausted"


@dataclass
class Claim:
    """One eligible NIC competing for a VF of the pool."""

    nic_id: int
    weight: int
    seq: int
    queue_pairs_requested: int = 1
    #: VF index held now, None while waiting.
    vf_index: int | None = None
    queue_pairs: int = 0

    def wait_key(self) -> tuple[int, int]:
        return (-self.weight, self.seq)

    def victim_key(self) -> tuple[int, int]:
        return (self.weight, -self.seq)


@dataclass(frozen=True)
class Pool:
    """One uplink: the VFs that exist, its queue-pair budget, and the claims."""

    vf_indexes: tuple[int, ...]
    queue_pair_capacity: int
    max_queue_pairs_per_vf: int
    claims: tuple[Claim, ...] = ()
    #: VFs held by NICs not listed in ``claims`` (the caller may load only the
    #: best waiters and the weakest holders of a big pool), and their queue pairs.
    busy_vf_indexes: frozenset[int] = frozenset()
    busy_queue_pairs: int = 0


@dataclass(frozen=True)
class Grant:
    nic_id: int
    vf_index: int
    queue_pairs: int


@dataclass(frozen=True)
class Preemption:
    nic_id: int
    vf_index: int
    by_nic_id: int


@dataclass
class Plan:
    """Steps in the order they must be applied, and who is left waiting and why."""

    steps: list[Grant | Preemption] = field(default_factory=list)
    waiting: dict[int, WaitReason] = field(default_factory=dict)

    @property
    def grants(self) -> list[Grant]:
        return [s for s in self.steps if isinstance(s, Grant)]

    @property
    def preemptions(self) -> list[Preemption]:
        return [s for s in self.steps if isinstance(s, Preemption)]


def plan_pool(pool: Pool) -> Plan:
    """Decide grants and preemptions so that rules 1-5 hold afterwards."""
    claims = {c.nic_id: Claim(**vars(c)) for c in pool.claims}  # work on copies
    held = {c.vf_index for c in claims.values() if c.vf_index is not None}
    held |= pool.busy_vf_indexes
    free = sorted(set(pool.vf_indexes) - held, reverse=True)  # pop() gives the lowest
    qp_left = (
        pool.queue_pair_capacity
        - pool.busy_queue_pairs
        - sum(c.queue_pairs for c in claims.values() if c.vf_index is not None)
    )
    holders = [(c.victim_key(), c.nic_id) for c in claims.values() if c.vf_index is not None]
    heapq.heapify(holders)
    waiters = [(c.wait_key(), c.nic_id) for c in claims.values() if c.vf_index is None]
    heapq.heapify(waiters)
    plan = Plan()

    def grant(claim: Claim, vf_index: int) -> None:
        nonlocal qp_left
        qps = min(claim.queue_pairs_requested, pool.max_queue_pairs_per_vf, qp_left)
        claim.vf_index, claim.queue_pairs = vf_index, qps
        qp_left -= qps
        plan.steps.append(Grant(claim.nic_id, vf_index, qps))
        heapq.heappush(holders, (claim.victim_key(), claim.nic_id))

    while waiters:
        _, nic_id = waiters[0]
        waiter = claims[nic_id]
        if free and qp_left >= 1:
            heapq.heappop(waiters)
            grant(waiter, free.pop())
            continue
        if holders and claims[holders[0][1]].weight < waiter.weight:
            heapq.heappop(waiters)
            victim = claims[heapq.heappop(holders)[1]]
            vf_index = victim.vf_index
            assert vf_index is not None
            plan.steps.append(Preemption(victim.nic_id, vf_index, waiter.nic_id))
            qp_left += victim.queue_pairs
            victim.vf_index, victim.queue_pairs = None, 0
            heapq.heappush(waiters, (victim.wait_key(), victim.nic_id))
            grant(waiter, vf_index)
            continue
        break
    reason = WaitReason.VFS_EXHAUSTED if not free else WaitReason.QUEUE_PAIRS_EXHAUSTED
    for _, nic_id in waiters:
        plan.waiting[nic_id] = reason
    return plan
