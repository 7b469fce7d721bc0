"""The daemon follows the VM runtime: starts and stops made outside iovctl, and
guests that never take their VF.

Two threads beside the HTTP servers, each with its own Context (SQLite connections
and a hypervisor connection are not shared across threads):

- **watch**: when the runtime follows a hypervisor (``VmRuntime.follows_hypervisor``,
  libvirt), first makes the store agree with every VM it owns (``power_states``:
  the daemon may have been down while they started or stopped), then runs
  ``runtime.watch`` and hands each reported change to ``services.power.follow``.
- **housekeeping**: every few seconds looks for VFs plugged into a guest that never
  negotiated failover (``services.failover_watch``) and gives them to the next
  waiter, and for VFs the hypervisor's own pools let go (they go to waiting NICs);
  and now and then syncs ``power_states`` again: a watch reports only what
  happens after it began (the gap between the first sync and the watch's start),
  and an event stream may drop events (a hypervisor restart).

Every write goes through the gateway's write path, as an HTTP write does: one
journaled operation each, the daemon being the state directory's single writer.
Neither thread holds the store's lock while it waits. :meth:`Follower.stop` (the
daemon's SIGTERM) sets the stop event; both threads end within about a second.

libvirt hooks (``/etc/libvirt/hooks/qemu``), if anyone adds them, may only signal
this daemon; they must never call libvirt (libvirtd waits for the hook: a deadlock).
The watch thread is what reacts.
"""

from __future__ import annotations

import logging
import threading
import time

from iovctl.domain.model import VmPowerChange
from iovctl.errors import IovctlError
from iovctl.http.gateway import Gateway
from iovctl.services import journal, power
from iovctl.services.allocation import pools_changed_elsewhere
from iovctl.services.context import Context
from iovctl.services.failover_watch import BOUND_S, FailoverWatch, Holding, give_up
from iovctl.wiring import open_context

log = logging.getLogger("iovctl.daemon")

#: Seconds between two looks for guests that never took their VF.
FAILOVER_LOOK_S = 2.0
#: Seconds before a watch that failed (the hypervisor went away) starts again.
RETRY_S = 5.0
#: Seconds between two full syncs of the hypervisor's power states.
RESYNC_S = 30.0


class Follower:
    """The daemon's watch and failover threads for one gateway."""

    def __init__(
        self,
        gateway: Gateway,
        failover_bound: float = BOUND_S,
        failover_look: float = FAILOVER_LOOK_S,
        resync: float = RESYNC_S,
    ) -> None:
        self.gateway = gateway
        self.stopping = threading.Event()
        self._watch = FailoverWatch(failover_bound)
        self._look = failover_look
        self._resync = resync
        self._elsewhere: frozenset[str] | None = None
        self._threads = [
            threading.Thread(target=self._run_watch, name="iovctl-watch", daemon=True),
            threading.Thread(target=self._run_housekeeping, name="iovctl-house", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    # -- the hypervisor's starts and stops ----------------------------------------

    def _run_watch(self) -> None:
        while not self.stopping.is_set():
            try:
                self._watch_once()
                return
            except IovctlError as exc:
                log.warning("following the VM runtime: %s; again in %.0f s", exc.message, RETRY_S)
            except Exception:  # the thread must outlive a bug's one occurrence
                log.exception("following the VM runtime failed; again in %.0f s", RETRY_S)
            self.stopping.wait(RETRY_S)

    def _watch_once(self) -> None:
        ctx = open_context(self.gateway.bound_options)
        try:
            if not ctx.runtime.follows_hypervisor:
                return  # its VMs run only by iovctl's commands: nothing to follow
            self.sync()
            ctx.runtime.watch(self._changed, self.stopping)
        finally:
            ctx.close()

    def sync(self) -> list[tuple[str, bool]]:
        """Make the store agree with every VM the hypervisor owns, now."""
        changed = self.gateway.call(lambda c: journal.run(c, power.sync), writes=True)
        for vm, running in changed:
            log.info(
                "VM %s %s outside iovctl, unseen until now", vm, "started" if running else "stopped"
            )
        return changed

    def _changed(self, change: VmPowerChange) -> None:
        try:
            self.gateway.call(lambda c: journal.run(c, power.follow, change), writes=True)
        except IovctlError as exc:
            # The next change, or the next daemon start's sync, tries again.
            log.warning("VM %s: could not follow the hypervisor: %s", change.vm, exc.message)

    # -- guests that never take their VF -----------------------------------------------

    def _run_housekeeping(self) -> None:
        try:
            follows = self.gateway.call(lambda c: c.runtime.follows_hypervisor, writes=False)
        except IovctlError as exc:
            log.warning("daemon housekeeping: %s", exc.message)
            follows = True  # look anyway: the runtime says so at the next look
        if not follows:
            return  # its VMs run only by iovctl's commands: nothing to look after
        synced = time.monotonic()
        while not self.stopping.wait(self._look):
            try:
                self.look_once(time.monotonic())
                if time.monotonic() - synced >= self._resync:
                    synced = time.monotonic()
                    self.sync()
            except IovctlError as exc:
                log.warning("daemon housekeeping: %s", exc.message)
            except Exception:  # the thread must outlive a bug's one occurrence
                log.exception("daemon housekeeping failed")

    def look_once(self, now: float) -> int:
        """One look, and a give-up for each VF idle beyond the bound; returns how
        many NICs were moved to the software path. VFs the hypervisor's own pools
        took or let go since the last look give every pool a new planning round."""
        watch = self._watch

        def look(c: Context) -> tuple[list[Holding], frozenset[str]]:
            return watch.look(c, now), c.runtime.vfs_held_elsewhere()

        overdue, elsewhere = self.gateway.call(look, writes=False)
        if elsewhere != self._elsewhere:  # the first look too: it may have changed before
            self.gateway.call(lambda c: journal.run(c, pools_changed_elsewhere), writes=True)
            self._elsewhere = elsewhere
        moved = 0
        for vm, nic, pci in overdue:

            def call(c: Context, vm: str = vm, nic: str = nic, pci: str = pci) -> bool:
                return journal.run(c, give_up, vm, nic, pci, watch.bound)

            if self.gateway.call(call, writes=True):
                moved += 1
            watch.forget((vm, nic, pci))
        return moved
