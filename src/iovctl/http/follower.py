"""The daemon follows the VM runtime: starts and stops made outside iovctl, and
guests that never take their VF.

Two threads beside the HTTP servers, each with its own Context (SQLite connections
and a hypervisor connection are not shared across threads):

- **watch**: when the runtime follows a hypervisor (``VmRuntime.follows_hypervisor``,
  libvirt), first makes the store agree with every VM it owns (``power_states``:
  the daemon may have been down while they started or stopped), then runs
  ``runtime.watch`` and hands each reported change to ``services.power.follow``.
- **failover**: every few seconds looks for VFs plugged into a guest that never
  negotiated failover (``services.failover_watch``) and gives them to the next waiter.

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
from iovctl.services.context import Context
from iovctl.services.failover_watch import BOUND_S, FailoverWatch, give_up
from iovctl.wiring import open_context

log = logging.getLogger("iovctl.daemon")

#: Seconds between two looks for guests that never took their VF.
FAILOVER_LOOK_S = 2.0
#: Seconds before a watch that failed (the hypervisor went away) starts again.
RETRY_S = 5.0


class Follower:
    """The daemon's watch and failover threads for one gateway."""

    def __init__(
        self,
        gateway: Gateway,
        failover_bound: float = BOUND_S,
        failover_look: float = FAILOVER_LOOK_S,
    ) -> None:
        self.gateway = gateway
        self.stopping = threading.Event()
        self._watch = FailoverWatch(failover_bound)
        self._look = failover_look
        self._threads = [
            threading.Thread(target=self._run_watch, name="iovctl-watch", daemon=True),
            threading.Thread(target=self._run_failover, name="iovctl-failover", daemon=True),
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
            changed = self.gateway.call(lambda c: journal.run(c, power.sync), writes=True)
            for vm, running in changed:
                log.info("VM %s %s while the daemon was away", vm, "ran" if running else "stopped")
            ctx.runtime.watch(self._changed, self.stopping)
        finally:
            ctx.close()

    def _changed(self, change: VmPowerChange) -> None:
        try:
            self.gateway.call(lambda c: journal.run(c, power.follow, change), writes=True)
        except IovctlError as exc:
            # The next change, or the next daemon start's sync, tries again.
            log.warning("VM %s: could not follow the hypervisor: %s", change.vm, exc.message)

    # -- guests that never take their VF -----------------------------------------------

    def _run_failover(self) -> None:
        while not self.stopping.wait(self._look):
            try:
                self.look_once(time.monotonic())
            except IovctlError as exc:
                log.warning("looking for guests without failover: %s", exc.message)
            except Exception:
                log.exception("looking for guests without failover failed")

    def look_once(self, now: float) -> int:
        """One look, and a give-up for each VF idle beyond the bound; returns how
        many NICs were moved to the software path."""
        watch = self._watch
        overdue = self.gateway.call(lambda c: watch.look(c, now), writes=False)
        moved = 0
        for vm, nic, pci in overdue:

            def call(c: Context, vm: str = vm, nic: str = nic, pci: str = pci) -> bool:
                return journal.run(c, give_up, vm, nic, pci, watch.bound)

            if self.gateway.call(call, writes=True):
                moved += 1
            watch.forget((vm, nic, pci))
        return moved
