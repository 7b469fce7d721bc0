"""``iovctl bench datapath``: real packets on the VF path and on the synthetic path.

Builds a throwaway emulated SR-IOV host (its own state directory, adapter, world and
VMs, all named with a random tag), or with ``--adapter PF`` takes an idle real PF and
its VFs (``bench.real_host``), drives it through the services exactly as the CLI
does, and measures with real traffic between network namespaces:

- single-stream TCP throughput (iperf3 when installed, else a Python socket blaster)
  and UDP request-response latency (p50/p99), VM to the outside world and VM to VM,
  on the VF path and on the synthetic path (``nic set --iov-weight 0``);
- aggregate throughput of 1..N VMs sending to the world at once, on both paths;
- the failover gap: a UDP datagram (and a TCP message) every 10 ms while the VF is
  taken away (``--iov-weight 0``) and given back, with the longest silence and the
  datagrams lost around each switch;
- setup time of 1, 16 and 64 VMs (create + NIC add + start, each one command).

Everything it created is removed at the end, also on failure, Ctrl-C or SIGTERM
(``TrafficLab.remove_run``, scoped to what the run named). A run killed with
SIGKILL leaves namespaces that ``iovctl cleanup`` removes. Needs root. Traffic never
leaves the namespaces the run created.

Reports numbers, never judges them. Programs run in the VMs through the runtime
(``VmRuntime.guest_command``) and in the world through the traffic lab
(``ports.traffic_lab``), which wiring builds. Must not import the CLI or any adapter.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from iovctl.bench import real_host
from iovctl.errors import HardwareError, InvalidInput
from iovctl.ports.traffic_lab import LabRun, PfLink, TrafficLab
from iovctl.services import adapters, journal, switches, vms
from iovctl.services.context import Context
from iovctl.wiring import Options, open_context, traffic_lab

#: Version of the JSON document ``--json`` writes.
SCHEMA = "iovctl-bench-datapath/1"
PROBE = Path(__file__).with_name("probe.py")
#: The VMs' one NIC.
NIC = "nic0"
#: Bound on waiting for a server to listen.
READY_TIMEOUT_S = 10.0
#: UDP round trips longer than this count as lost.
RR_TIMEOUT_S = 0.2
FAILOVER_INTERVAL_MS = 10
MAX_VMS = 32


class Tool(enum.StrEnum):
    """What measures TCP throughput."""

    AUTO = "auto"
    IPERF3 = "iperf3"
    #: Bounded pure-Python socket blaster (probe.py sink/source): no iperf3 needed.
    PYTHON = "python"


class DataPath(enum.StrEnum):
    """Which half of the failover pair carries a NIC's traffic."""

    VF = "vf"
    SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class BenchPlan:
    """How much to measure. ``quick``: small counts, a few seconds each (CI)."""

    #: VMs sending at once in the scaling runs (the largest count), 2-32.
    vms: int = 4
    quick: bool = False
    tool: Tool = Tool.AUTO

    def __post_init__(self) -> None:
        if not 2 <= self.vms <= MAX_VMS:
            raise InvalidInput(
                "invalid-bench-vms",
                f"--vms {self.vms} is out of range",
                f"use 2 to {MAX_VMS} VMs (VM to VM needs two)",
            )

    @property
    def seconds(self) -> float:
        """Length of one throughput run."""
        return 1.0 if self.quick else 3.0

    @property
    def round_trips(self) -> int:
        return 300 if self.quick else 2000

    @property
    def warmup(self) -> int:
        return 20 if self.quick else 100

    @property
    def failover_cycles(self) -> int:
        return 1 if self.quick else 3

    @property
    def failover_hold_s(self) -> float:
        """Time on each path between switches."""
        # Over a second apart, as VF changes are in life: the kernel's linkwatch runs
        # non-urgent events at most once a second, which shapes the gap (runtime).
        return 0.6 if self.quick else 1.5

    @property
    def setup_sizes(self) -> tuple[int, ...]:
        return (1, 4, 8) if self.quick else (1, 16, 64)

    @property
    def scale_counts(self) -> tuple[int, ...]:
        counts, n = [], 1
        while n < self.vms:
            counts.append(n)
            n *= 2
        return (*counts, self.vms)

    @property
    def total_vfs(self) -> int:
        return max(8, self.vms)


def resolve_tool(tool: Tool) -> Tool:
    """iperf3 when asked or installed; the Python blaster otherwise."""
    if tool is Tool.AUTO:
        return Tool.IPERF3 if shutil.which("iperf3") else Tool.PYTHON
    if tool is Tool.IPERF3 and not shutil.which("iperf3"):
        raise HardwareError(
            "tool-missing",
            "iperf3 is not installed",
            "install it (apt-get install -y iperf3) or use --tool python",
        )
    return tool


def percentile(samples: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0-100) of ``samples``."""
    data = sorted(samples)
    if not data:
        return 0.0
    k = (len(data) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def failover_segment(
    sent: list[float],
    received: list[float | None],
    start: float,
    end: float,
) -> dict[str, Any]:
    """Longest silence and lost datagrams from ``start`` (a switch began) to ``end``.

    The silence is the longest time between two consecutive echoes, counted from the
    last echo before ``start`` (a silence that outlasts the segment counts whole);
    lost are datagrams sent in [start, end) that never came back.
    """
    arrivals = sorted(t for t in received if t is not None)
    before = [t for t in arrivals if t <= start]
    after = [t for t in arrivals if t > start]
    window = ([before[-1]] if before else []) + [t for t in after if t < end]
    if after and after[0] >= end:
        window.append(after[0])  # the silence began here and outlasted the segment
    elif not after and sent:
        window.append(min(end, sent[-1]))  # silent until the end of the run
    gaps = [b - a for a, b in itertools.pairwise(window)]
    lost = sum(1 for s, r in zip(sent, received, strict=True) if start <= s < end and r is None)
    return {"max_gap_ms": round(max(gaps, default=0.0) * 1000, 1), "lost": lost}


def _poll(check: Callable[[], bool], timeout: float) -> bool:
    """Poll ``check`` every 10 ms until true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


class _Proc:
    """A probe or iperf3 process in a VM or the world, reading its stdout without a
    shell. ``where``: the argv prefix that runs it there (``guest_command``,
    ``world_command``), which must exec the program (its pid is the probe's)."""

    def __init__(self, where: list[str], argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            [*where, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        self._head = b""

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait for the probe's ``{"ready": true}`` line."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._head:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.fail("did not get ready")
            if select.select([fd], [], [], min(left, 0.1))[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.fail("exited before getting ready")
                self._head += chunk
        line, self._head = self._head.split(b"\n", 1)
        if b"ready" not in line:
            self.fail(f"said {line!r} instead of getting ready")

    def wait_listening(self, port: int, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until the process listens on TCP ``port`` (iperf3 prints no ready line)."""

        def listening() -> bool:
            for table in ("tcp", "tcp6"):
                with contextlib.suppress(OSError):
                    rows = Path(f"/proc/{self.proc.pid}/net/{table}").read_text().splitlines()
                    for row in rows[1:]:
                        cols = row.split()
                        if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                            return True
            return False

        if not _poll(lambda: listening() or self.proc.poll() is not None, timeout):
            self.fail("did not listen")
        if self.proc.poll() is not None:
            self.fail("exited before listening")

    def result(self, timeout: float) -> str:
        """The process's whole stdout once it exited; raises when it failed."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.fail(f"did not finish within {timeout:.0f} s")
        if self.proc.returncode != 0:
            self.fail(f"exited with {self.proc.returncode}: {err.decode(errors='replace')[-400:]}")
        return (self._head + out).decode()

    def json(self, timeout: float, *, whole: bool = False) -> dict[str, Any]:
        """The JSON object on the last line of stdout (``whole``: all of stdout)."""
        text = self.result(timeout).strip()
        try:
            return dict(json.loads(text if whole else text.splitlines()[-1]))
        except (ValueError, IndexError):
            return self.fail(f"printed no JSON: {text[-200:]!r}")  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def fail(self, problem: str) -> Any:
        self.kill()
        raise HardwareError(
            "bench-probe-failed",
            f"{' '.join(self.argv[:2])} ... {problem}",
            "rerun with IOVCTL_DEBUG=1; `iovctl cleanup` removes anything left behind",
        )


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C (KeyboardInterrupt), so cleanup runs for both."""
    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            # A child pyroute2 forked (and stops with SIGTERM) inherits this handler:
            # it must die as it would have without it, not unwind the bench.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """Cleanup must finish: a second Ctrl-C or a SIGTERM waits until it has."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class DatapathBench:
    """One run of the data-path benchmark on a throwaway emulated SR-IOV host. Root."""

    def __init__(
        self,
        plan: BenchPlan,
        progress: Callable[[str], None] | None = None,
        tag: str = "",
        adapter: str | None = None,
    ) -> None:
        self.plan = plan
        self.tool = resolve_tool(plan.tool)
        self.progress = progress or (lambda _msg: None)
        self.tag = tag or uuid.uuid4().hex[:4]
        #: A real PF to take for the run (``--adapter``); None: an emulated one.
        self.real_pf = adapter
        self._pf_state: PfLink | None = None
        self.adapter = adapter or f"iovb{self.tag}"
        self.switch = f"bench-{self.tag}"
        #: The peer outside the VMs' NICs, its address and where its programs run: the
        #: emulation's world (a name the emulation spec gives it), or on a real PF a
        #: peer VM on the software path (``_open``).
        self.world = f"iov-bw{self.tag}"
        self._world_ip = "10.77.0.1"
        self._world_where: list[str] | None = None
        self.vm_prefix = f"b{self.tag}-"
        self._procs: list[_Proc] = []
        self._vms: list[str] = []
        self._port = 5200
        self._tmp: Path | None = None
        self._ctx: Context | None = None
        self._lab: TrafficLab | None = None

    # -- the run -------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Measure everything; clean up whatever happens. Returns the JSON document."""
        if os.geteuid() != 0:
            raise HardwareError(
                "bench-needs-root",
                "the data-path benchmark builds network namespaces, veths and bridges",
                "run it as root: sudo iovctl bench datapath",
            )
        started = time.monotonic()
        doc: dict[str, Any] = {"schema": SCHEMA, "plan": self._plan_view(), "host": _host_view()}
        with _interrupt_on_sigterm():
            try:
                self._open()
                doc["backend"] = self.ctx.hardware.backend_name
                doc["world"] = (
                    f"peer VM {self.world} on the software path of {self.adapter}'s switch"
                    if self.real_pf
                    else f"namespace {self.world} beyond the emulated uplink wire"
                )
                pool = self._start_vms("v", self.plan.vms, weight=100)
                doc["paths"] = {}
                doc["scaling"] = {}
                doc["paths"][DataPath.VF.value] = self._paths(pool, DataPath.VF)
                doc["scaling"][DataPath.VF.value] = self._scaling(pool, DataPath.VF)
                doc["failover"] = self._failover(pool[0])
                self._set_weights(pool, 0)
                doc["paths"][DataPath.SYNTHETIC.value] = self._paths(pool, DataPath.SYNTHETIC)
                doc["scaling"][DataPath.SYNTHETIC.value] = self._scaling(pool, DataPath.SYNTHETIC)
                doc["ratios"] = ratios(doc["paths"])
                self._remove_vms(pool)
                doc["setup"] = self._setup_scaling()
            finally:
                with _uninterruptible():
                    doc["cleanup"] = self._teardown()
        doc["duration_s"] = round(time.monotonic() - started, 1)
        return doc

    @property
    def ctx(self) -> Context:
        assert self._ctx is not None, "the bench host is not open"
        return self._ctx

    @property
    def lab(self) -> TrafficLab:
        if self._lab is None:
            self._lab = traffic_lab()
        return self._lab

    def _plan_view(self) -> dict[str, Any]:
        p = self.plan
        return {
            "vms": p.vms,
            "quick": p.quick,
            "tool": self.tool.value,
            "throughput_seconds": p.seconds,
            "round_trips": p.round_trips,
            "failover_cycles": p.failover_cycles,
            "failover_interval_ms": FAILOVER_INTERVAL_MS,
            "setup_sizes": list(p.setup_sizes),
            "tag": self.tag,
            "adapter": self.real_pf,
        }

    def _open(self) -> None:
        if self.real_pf is not None:
            self._open_real(self.real_pf)
            return
        self.progress(f"building emulated SR-IOV host {self.adapter} (tag {self.tag})")
        self._tmp = Path(tempfile.mkdtemp(prefix=f"iovctl-bench-{self.tag}-"))
        spec = self._tmp / "emulation.yaml"
        spec.write_text(
            f"name: bench-{self.tag}\n"
            f"world: {{netns: {self.world}, address: 10.77.0.1/16}}\n"
            "adapters:\n"
            f"  - {{name: {self.adapter}, mode: veb, total_vfs: {self.plan.total_vfs}}}\n"
        )
        self._ctx = open_context(Options(state_dir=self._tmp / "state", emulate=str(spec)))
        self._call(switches.create, self.switch, self.adapter, True)
        self._call(adapters.set_num_vfs, self.adapter, self.plan.total_vfs)
        self._world_where = self.lab.world_command(self.world)

    def _open_real(self, pf: str) -> None:
        self.progress(f"taking SR-IOV adapter {pf} for the run (tag {self.tag})")
        self._tmp = Path(tempfile.mkdtemp(prefix=f"iovctl-bench-{self.tag}-"))
        self._ctx = open_context(Options(state_dir=self._tmp / "state"))
        if self.ctx.hardware.backend_name != "linux":
            raise InvalidInput(
                "bench-no-real-host",
                f"--adapter {pf} needs a Linux host with a PCI bus",
                "run without --adapter for the emulated SR-IOV NIC",
            )
        with self.ctx.store.snapshot():
            self._pf_state = real_host.take(self.ctx, pf, self.lab)
            total = self.ctx.hardware.adapter(pf).sriov
        vfs = min(self.plan.total_vfs, total.total_vfs if total else 0)
        if self.plan.vms > vfs:
            raise InvalidInput(
                "invalid-bench-vms",
                f"--vms {self.plan.vms} is more than the {vfs} VFs of {pf}",
                f"use --vms 2 to {vfs} on this adapter",
            )
        self._call(switches.create, self.switch, pf, True)
        self._call(adapters.set_num_vfs, pf, vfs)
        peer = self._vm("peer", 0)
        self._start_vm(peer, weight=0)
        self.world, self._world_ip = peer, self._ip(peer)
        self._world_where = self._in_vm(peer)

    def _release_real(self) -> None:
        """Hand the PF back: VMs, switch and VFs removed through the services."""
        assert self._pf_state is not None and self._ctx is not None
        for vm in reversed(self._vms):
            with contextlib.suppress(Exception):
                self._call(vms.stop_vm, vm)
                self._call(vms.delete_vm, vm)
        with contextlib.suppress(Exception):
            self._call(switches.delete, self.switch)
        with contextlib.suppress(Exception):
            self._call(adapters.set_num_vfs, self._pf_state.name, 0, force=True)
        real_host.give_back(self._pf_state, self.lab)

    def _teardown(self) -> dict[str, Any]:
        """Kill the probes, close the host, remove every object with the run's tag."""
        for proc in self._procs:
            proc.kill()
        self._procs.clear()
        if self._pf_state is not None:
            self._release_real()
        if self._ctx is not None:
            self._ctx.runtime.close()
            self._ctx.hardware.close()
            self._ctx.close()
        emulated = self.real_pf is None  # the emulated adapter and its world are the run's own
        run = LabRun(
            vm_prefix=self.vm_prefix,
            vms=tuple(self._vms),
            nic=NIC,
            switch=self.switch,
            emulated_adapter=self.adapter if emulated else None,
            world=self.world if emulated else None,
        )
        try:
            removed = self.lab.remove_run(run)
            left = self.lab.run_leftovers(run)
        finally:
            self.lab.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        return {
            "namespaces_removed": len(removed.namespaces),
            "links_removed": len(removed.links),
            "nft_chains_removed": len(removed.nft_chains),
            "leftovers": {
                "namespaces": list(left.namespaces),
                "links": list(left.links),
                "nft_chains": list(left.nft_chains),
            },
        }

    # -- services, as the CLI calls them --------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One service call as one journaled operation: what one iovctl command does."""
        return journal.run(self.ctx, fn, *args, **kwargs)

    def _vm(self, kind: str, i: int) -> str:
        return f"{self.vm_prefix}{kind}{i}"

    def _start_vm(self, name: str, weight: int) -> None:
        self._vms.append(name)
        self._call(vms.create_vm, name)
        self._call(vms.add_nic, name, self.switch, NIC, vms.NicChanges(iov_weight=weight))
        self._call(vms.start_vm, name)

    def _start_vms(self, kind: str, count: int, weight: int) -> list[str]:
        self.progress(f"starting {count} VMs")
        out = [self._vm(kind, i) for i in range(count)]
        for name in out:
            self._start_vm(name, weight)
        return out

    def _remove_vms(self, pool: list[str]) -> None:
        for name in reversed(pool):
            self._call(vms.stop_vm, name)
            self._call(vms.delete_vm, name)
        # A stop may finish after it returned; the next phase should not pay for it.
        deadline = time.monotonic() + 30
        for vm in pool:
            self.ctx.runtime.wait_released(vm, (NIC,), max(0.0, deadline - time.monotonic()))

    def _set_weights(self, pool: list[str], weight: int) -> None:
        for name in pool:
            self._call(vms.set_nic, name, NIC, vms.NicChanges(iov_weight=weight))

    def _expect(self, pool: list[str], path: DataPath) -> None:
        for name in pool:
            on_vf = self.ctx.runtime.vf_data_path_active(name, NIC)
            if on_vf != (path is DataPath.VF):
                raise HardwareError(
                    "bench-wrong-path",
                    f"{name}/{NIC} is {'' if on_vf else 'not '}on its VF; the {path} path "
                    "was to be measured",
                    "check the allocator: iovctl nic list (on a kept state dir)",
                )

    def _ip(self, vm: str) -> str:
        config = self.ctx.store.get_nic(vm, NIC).config
        address = self.ctx.runtime.guest_address(vm, NIC, config)
        assert address is not None
        return str(address.ip)

    @property
    def world_ip(self) -> str:
        return self._world_ip

    @property
    def world_where(self) -> list[str]:
        """The argv prefix that runs a program in the world."""
        assert self._world_where is not None, "the bench host is not open"
        return self._world_where

    def _in_vm(self, vm: str) -> list[str]:
        """The argv prefix that runs a program in VM ``vm``."""
        where = self.ctx.runtime.guest_command(vm)
        if where is None:
            raise HardwareError(
                "bench-no-guest",
                f"the VM runtime cannot run programs in VM {vm}",
                "run the bench on the namespace runtime (the default on emulated and real hosts)",
            )
        return where

    def _next_port(self) -> int:
        self._port += 1
        return self._port

    def _spawn(self, where: list[str], argv: list[str]) -> _Proc:
        proc = _Proc(where, argv)
        self._procs.append(proc)
        return proc

    def _probe(self, where: list[str], *args: str, realtime: bool = False) -> _Proc:
        """A probe.py command run by ``where``; ``realtime`` for the light,
        timing-sensitive ones (latency, failover): they answer at once however busy
        the cores are."""
        flag = ["--realtime"] if realtime else []
        return self._spawn(where, [sys.executable, "-I", str(PROBE), *flag, *args])

    def _done(self, proc: _Proc) -> None:
        proc.kill()
        self._procs.remove(proc)

    def _tx_bytes(self, vm: str) -> dict[str, int]:
        """Bytes the VM's NIC sent so far on each half of its pair."""
        sent = self.ctx.runtime.nic_tx_bytes(vm, NIC)
        return {DataPath.SYNTHETIC.value: sent.synthetic, DataPath.VF.value: sent.vf}

    # -- measurements -----------------------------------------------------------------

    def _throughput(self, pairs: list[tuple[list[str], list[str], str]]) -> list[float]:
        """Mbit/s of one TCP stream per (client, server, server ip), all at once; client
        and server as argv prefixes that run programs where they are."""
        seconds = self.plan.seconds
        servers, clients = [], []
        for _client, server, _ip in pairs:
            port = self._next_port()
            if self.tool is Tool.IPERF3:
                srv = self._spawn(server, ["iperf3", "-s", "-1", "-p", str(port)])
                srv.wait_listening(port)
            else:
                srv = self._probe(server, "sink", str(port), str(seconds + 10))
                srv.wait_ready()
            servers.append((srv, port))
        for (client_at, _server, ip), (_srv, port) in zip(pairs, servers, strict=True):
            if self.tool is Tool.IPERF3:
                argv = ["iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-J"]
                clients.append(self._spawn(client_at, argv))
            else:
                clients.append(self._probe(client_at, "source", ip, str(port), str(seconds)))
        out = []
        for client, (srv, _port) in zip(clients, servers, strict=True):
            if self.tool is Tool.IPERF3:
                report = client.json(seconds + 15, whole=True)
                if "error" in report:
                    client.fail(str(report["error"]))
                bps = float(report["end"]["sum_received"]["bits_per_second"])
                out.append(round(bps / 1e6, 1))
            else:
                client.result(seconds + 15)
                out.append(round(float(srv.json(15)["mbps"]), 1))
            self._done(client)
            self._done(srv)
        return out

    def _latency(self, client_at: list[str], server: list[str], ip: str) -> dict[str, Any]:
        """UDP request-response: p50/p99 in microseconds over ``round_trips``."""
        port = self._next_port()
        n, warm = self.plan.round_trips, self.plan.warmup
        bound = (n + warm) * RR_TIMEOUT_S
        srv = self._probe(server, "rr-server", str(port), str(bound + 5), realtime=True)
        srv.wait_ready()
        client = self._probe(
            client_at,
            "rr-client",
            ip,
            str(port),
            str(n),
            str(warm),
            str(RR_TIMEOUT_S),
            realtime=True,
        )
        report = client.json(bound + 10)
        self._done(client)
        self._done(srv)
        samples = [float(s) for s in report["samples_us"]]
        return {
            "round_trips": len(samples),
            "lost": int(report["lost"]),
            "p50_us": round(percentile(samples, 50), 1),
            "p99_us": round(percentile(samples, 99), 1),
            "mean_us": round(statistics.fmean(samples), 1) if samples else 0.0,
        }

    def _pair(self, vm: str, server: list[str], ip: str) -> dict[str, Any]:
        before = self._tx_bytes(vm)
        mbps = self._throughput([(self._in_vm(vm), server, ip)])[0]
        latency = self._latency(self._in_vm(vm), server, ip)
        after = self._tx_bytes(vm)
        sent = {half: after.get(half, 0) - before.get(half, 0) for half in after}
        return {
            "throughput_mbps": mbps,
            "latency": latency,
            "tx_bytes_by_half": sent,
            # What the interface counters say carried it (the allocator's claim checked).
            "carried_by": max(sent, key=lambda h: sent[h]) if any(sent.values()) else None,
        }

    def _paths(self, pool: list[str], path: DataPath) -> dict[str, Any]:
        a, b = pool[0], pool[1]
        self._expect([a, b], path)
        self.progress(f"{path} path: VM to world")
        to_world = self._pair(a, self.world_where, self.world_ip)
        self.progress(f"{path} path: VM to VM")
        to_vm = self._pair(a, self._in_vm(b), self._ip(b))
        return {"vm_to_world": to_world, "vm_to_vm": to_vm}

    def _scaling(self, pool: list[str], path: DataPath) -> list[dict[str, Any]]:
        self._expect(pool, path)
        out = []
        for count in self.plan.scale_counts:
            self.progress(f"{path} path: {count} VMs sending to the world at once")
            senders = pool[:count]
            per_vm = self._throughput(
                [(self._in_vm(v), self.world_where, self.world_ip) for v in senders]
            )
            out.append(
                {"vms": count, "aggregate_mbps": round(sum(per_vm), 1), "per_vm_mbps": per_vm}
            )
        return out

    def _failover(self, vm: str) -> dict[str, Any]:
        """Ping every 10 ms across VF removal (``--iov-weight 0``) and return."""
        self._expect([vm], DataPath.VF)
        self.progress(f"failover: {self.plan.failover_cycles} VF removals and returns")
        hold, cycles = self.plan.failover_hold_s, self.plan.failover_cycles
        # The client stops when told (SIGUSR1); this only bounds it.
        bound = 1.0 + cycles * 2 * (hold + 5.0)
        port = self._next_port()
        srv = self._probe(self.world_where, "echo-server", str(port), str(bound + 5), realtime=True)
        srv.wait_ready()
        client = self._probe(
            self._in_vm(vm),
            "gap-client",
            self.world_ip,
            str(port),
            str(bound),
            str(FAILOVER_INTERVAL_MS),
            realtime=True,
        )
        client.wait_ready()
        events: list[tuple[str, float, float]] = []
        time.sleep(hold)
        for _ in range(cycles):
            for kind, weight in (("removal", 0), ("return", 100)):
                t0 = time.monotonic()
                self._call(vms.set_nic, vm, NIC, vms.NicChanges(iov_weight=weight))
                events.append((kind, t0, time.monotonic()))
                time.sleep(hold)
        client.proc.send_signal(signal.SIGUSR1)
        report = client.json(10)
        self._done(client)
        self._done(srv)
        self._expect([vm], DataPath.VF)
        return failover_report(report, events)

    def _setup_scaling(self) -> list[dict[str, Any]]:
        """Wall time of create + NIC add + start for 1, 16, 64 VMs (one command each)."""
        out = []
        for size in self.plan.setup_sizes:
            self.progress(f"setup: {size} VMs")
            pool = [self._vm(f"n{size}x", i) for i in range(size)]
            each: list[float] = []
            for name in pool:
                t0 = time.monotonic()
                self._start_vm(name, weight=100)
                each.append(time.monotonic() - t0)
            setup = sum(each)
            vf = [self.ctx.runtime.vf_data_path_active(v, NIC) for v in pool]
            t0 = time.monotonic()
            self._remove_vms(pool)
            teardown = time.monotonic() - t0

            pairs = list(zip(each, vf, strict=True))

            def median_ms(times: list[float]) -> float | None:
                return round(statistics.median(times) * 1000, 1) if times else None

            out.append(
                {
                    "vms": size,
                    "setup_s": round(setup, 2),
                    "per_vm_ms": round(setup / size * 1000, 1),
                    "on_vf": sum(vf),
                    # A VM that gets a VF costs more (VF programmed, moved, switched to);
                    # linear setup shows as these two staying flat as the count grows.
                    "median_vm_ms_with_vf": median_ms([t for t, v in pairs if v]),
                    "median_vm_ms_software": median_ms([t for t, v in pairs if not v]),
                    "last_vm_ms": round(each[-1] * 1000, 1),
                    "teardown_s": round(teardown, 2),
                }
            )
        return out


def failover_report(
    report: dict[str, Any], events: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Line the gap client's datagrams up with the switches (kind, start, end)."""
    sent = [float(t) for t in report["sent"]]
    received = [None if t is None else float(t) for t in report["received"]]
    first_switch = events[0][1] if events else float("inf")
    baseline = failover_segment(sent, received, sent[0] if sent else 0.0, first_switch)
    switches_: list[dict[str, Any]] = []
    for i, (kind, t0, t1) in enumerate(events):
        end = events[i + 1][1] if i + 1 < len(events) else float("inf")
        seg = failover_segment(sent, received, t0, end)
        switches_.append({"kind": kind, "call_ms": round((t1 - t0) * 1000, 1), **seg})
    tcp = [float(t) for t in report["tcp_times"]]
    tcp_gaps = [b - a for a, b in itertools.pairwise(tcp)]
    out: dict[str, Any] = {
        "interval_ms": report["interval_ms"],
        "sent": len(sent),
        "baseline_max_gap_ms": baseline["max_gap_ms"],
        "switches": switches_,
        "tcp_survived": report["tcp_error"] is None and len(tcp) == len(sent),
        "tcp_error": report["tcp_error"],
        "tcp_max_gap_ms": round(max(tcp_gaps, default=0.0) * 1000, 1),
    }
    for kind in ("removal", "return"):
        mine = [s for s in switches_ if s["kind"] == kind]
        out[kind] = {
            "max_gap_ms": max((s["max_gap_ms"] for s in mine), default=None),
            "median_gap_ms": round(statistics.median(s["max_gap_ms"] for s in mine), 1)
            if mine
            else None,
            "lost": sum(s["lost"] for s in mine),
            "median_call_ms": round(statistics.median(s["call_ms"] for s in mine), 1)
            if mine
            else None,
        }
    return out


def ratios(paths: dict[str, Any]) -> dict[str, Any]:
    """VF path over synthetic path, per direction: throughput and latency ratios."""
    vf, syn = paths[DataPath.VF.value], paths[DataPath.SYNTHETIC.value]
    out = {}
    for direction in ("vm_to_world", "vm_to_vm"):
        a, b = vf[direction], syn[direction]

        def ratio(x: float, y: float) -> float | None:
            return round(x / y, 2) if y else None

        out[direction] = {
            "throughput": ratio(a["throughput_mbps"], b["throughput_mbps"]),
            "latency_p50": ratio(a["latency"]["p50_us"], b["latency"]["p50_us"]),
            "latency_p99": ratio(a["latency"]["p99_us"], b["latency"]["p99_us"]),
        }
    return out


def _host_view() -> dict[str, Any]:
    iperf = shutil.which("iperf3")
    version = None
    if iperf:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            version = subprocess.run(
                [iperf, "--version"], capture_output=True, text=True, timeout=5, check=False
            ).stdout.split("\n")[0]
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "iperf3": version,
    }
