"""A real libvirtd + QEMU (TCG) for the libvirt runtime's tests. Root; run under the
shared privileged lock.

The session fixture :func:`libvirt_host` uses the system libvirtd
(``qemu:///system``), starting ``virtlogd -d`` and ``libvirtd -d`` itself when none
answers (no systemd on CI), and stops what it started at the end. For the daemon it
starts, qemu.conf runs QEMU as root (see QEMU_AS_ROOT), restored at the end; nothing
else is configured: without AppArmor or SELinux libvirt picks no security driver. It builds (once, cached) the minimal guest of tests/libvirt_guest, and a
switch whose uplink is a veth to a namespace peer (``10.78.0.1/24``): a guest's
virtio NIC on the switch's bridge reaches the peer across it.

Skips with a reason where this cannot run: not root, no libvirt-python, no libvirtd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iovctl.domain.model import VmTemplate

URI = "qemu:///system"
REPO = Path(__file__).resolve().parents[2]
#: The peer's namespace and the switch's uplink (not iovctl's names: cleanup spares them).
PEER_NS = "lvpeer"
UPLINK = "lvup0"
PEER_ADDRESS = "10.78.0.1"
PREFIX = 24
#: Console logs of the test domains (virtlogd writes them as root).
CONSOLE_DIR = "/var/log/libvirt/qemu"
#: Longest wait for libvirtd to answer after starting it (about 12 s here: it probes
#: QEMU's capabilities first).
DAEMON_WAIT_S = 90.0


@dataclass
class LibvirtHost:
    """What the libvirt runtime's tests share: the daemon, the guest, the switch."""

    guest: Path
    switch: str = "lvsw"

    def template(self, cmdline: str = "") -> VmTemplate:
        return VmTemplate(
            memory_mib=256,
            vcpus=1,
            kernel=str(self.guest / "vmlinuz"),
            initrd=str(self.guest / "initrd.img"),
            cmdline=f"console=ttyS0 quiet panic=-1 {cmdline}".strip(),
        )

    def runtime(self, detach_timeout: float = 40.0) -> Any:
        from iovctl.adapters.libvirt.runtime import LibvirtVmRuntime

        return LibvirtVmRuntime(
            URI,
            lambda switch: UPLINK,
            domain_type="qemu",  # TCG: this host's /dev/kvm does not run guests
            console_log_dir=CONSOLE_DIR,
            detach_timeout=detach_timeout,
        )

    def define_outside(self, vm: str, q35: bool, slots: int, failover: bool) -> None:
        """``virsh define`` of a domain iovctl does not know: the minimal guest on a q35
        machine with ``slots`` spare root ports, or on i440fx."""
        import libvirt

        if not failover:
            pytest.skip("the minimal guest's virtio_net always negotiates failover")
        t = self.template()
        ports = "".join(
            f"<controller type='pci' index='{i}' model='pcie-root-port'/>"
            for i in range(1, 1 + (slots if q35 else 0))
        )
        xml = f"""<domain type='qemu'><name>{vm}</name><memory unit='MiB'>{t.memory_mib}</memory>
  <vcpu>1</vcpu><os><type arch='x86_64' machine='{"q35" if q35 else "pc"}'>hvm</type>
  <kernel>{t.kernel}</kernel><initrd>{t.initrd}</initrd><cmdline>{t.cmdline}</cmdline></os>
  <features><acpi/><apic/></features>
  <devices>{ports}<serial type='pty'/><console type='pty'/></devices></domain>"""
        conn = libvirt.open(URI)
        try:
            domain = conn.defineXML(xml)
            if q35 and slots == 0:
                # libvirt leaves a q35 domain one spare root port: turn hot-plug off
                # on every root port, as a domain with no room left would have it.
                tree = ET.fromstring(domain.XMLDesc(0))
                for c in tree.iter("controller"):
                    if c.get("model") == "pcie-root-port":
                        target = c.find("target")
                        if target is None:
                            target = ET.SubElement(c, "target")
                        target.set("hotplug", "off")
                conn.defineXML(ET.tostring(tree, encoding="unicode"))
        finally:
            conn.close()

    def virsh(self, *argv: str) -> None:
        """What an admin does with virsh (start, destroy)."""
        done = subprocess.run(
            ["virsh", "-c", URI, *argv], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"virsh {argv}: {done.stderr}"

    def remove_domain(self, vm: str) -> None:
        """``virsh destroy`` + ``undefine``, whatever state the domain is in (or none)."""
        for verb in ("destroy", "undefine"):
            subprocess.run(["virsh", "-c", URI, verb, vm], capture_output=True, check=False)

    def console(self, vm: str) -> Path:
        return Path(CONSOLE_DIR) / f"{vm}-console.log"

    def wait_console(self, vm: str, line: str, bound: float) -> float:
        """Seconds until the guest printed ``line`` on its console; fails at ``bound``."""
        start = time.monotonic()
        while time.monotonic() - start < bound:
            path = self.console(vm)
            if path.exists() and line in path.read_text(errors="replace"):
                return time.monotonic() - start
            time.sleep(0.2)
        tail = (
            self.console(vm).read_text(errors="replace")[-2000:]
            if self.console(vm).exists()
            else ""
        )
        raise AssertionError(f"{vm} did not print {line!r} within {bound} s; console:\n{tail}")

    def peer(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a program in the peer's namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", PEER_NS, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _answers() -> bool:
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # raised, not printed
    try:
        libvirt.open(URI).close()
        return True
    except libvirt.libvirtError:
        return False


#: Runs virtlogd and libvirtd in the foreground as a child subreaper, and reaps.
#: Where PID 1 reaps no orphans (this CI's VMs: their init is a process API), the
#: QEMU that libvirtd starts to probe capabilities daemonizes, dies a zombie, and
#: libvirtd waits for it to go (virProcessKillPainfully) on every probe: defines hang
#: for minutes. Adopting and reaping them here keeps libvirtd's waits short.
REAPER = """
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
daemons = [subprocess.Popen([d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
           for d in sys.argv[1:]]
signal.signal(signal.SIGTERM, lambda *_: [d.terminate() for d in reversed(daemons)])
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
    except InterruptedError:
        continue
"""


QEMU_CONF = Path("/etc/libvirt/qemu.conf")
#: Appended to qemu.conf while the daemon this fixture started runs (then restored).
#: QEMU as root: where /dev/kvm exists but only root may open it (mode 0600 on these
#: VMs), libvirt finds its QEMU capabilities "probed with KVM, KVM not usable now" for
#: the libvirt-qemu user on every lookup and probes QEMU again: 11 s per define here.
QEMU_AS_ROOT = '\n# iovctl tests (removed after them)\nuser = "root"\ngroup = "root"\n'


def _start_daemons() -> subprocess.Popen[bytes] | None:
    """virtlogd and libvirtd (those not running) under :data:`REAPER`; None when
    both run already."""
    for d in ("/var/log/libvirt", "/var/run/libvirt"):
        os.makedirs(d, exist_ok=True)
    wanted = [
        d
        for d in ("virtlogd", "libvirtd")
        if subprocess.run(["pgrep", "-x", d], capture_output=True, check=False).returncode != 0
    ]
    if not wanted:
        return None
    return subprocess.Popen([sys.executable, "-c", REAPER, *wanted], start_new_session=True)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope="session")
def libvirt_host() -> Iterator[LibvirtHost]:
    if os.geteuid() != 0:
        pytest.skip("the libvirt runtime's tests need root (libvirtd, bridges)")
    pytest.importorskip("libvirt", reason="libvirt-python is not installed (extra: libvirt)")
    if shutil.which("libvirtd") is None or shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no libvirtd or qemu-system-x86_64 (apt-get install libvirt-daemon-system)")
    started = None
    original_conf = None
    if not _answers():
        if QEMU_CONF.exists():
            original_conf = QEMU_CONF.read_bytes()
            QEMU_CONF.write_bytes(original_conf + QEMU_AS_ROOT.encode())
        started = _start_daemons()
        deadline = time.monotonic() + DAEMON_WAIT_S
        while not _answers():
            if time.monotonic() > deadline:
                pytest.fail(f"libvirtd did not answer on {URI} within {DAEMON_WAIT_S} s")
            time.sleep(0.5)
    built = subprocess.run(
        ["bash", str(REPO / "tests/libvirt_guest/build")],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"building the libvirt test guest failed:\n{built.stderr}")
    subprocess.run(["ip", "netns", "del", PEER_NS], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", UPLINK], capture_output=True, check=False)
    _run("ip", "netns", "add", PEER_NS)
    _run("ip", "link", "add", UPLINK, "type", "veth", "peer", "name", "peer0", "netns", PEER_NS)
    _run("ip", "link", "set", UPLINK, "up")
    _run("ip", "-n", PEER_NS, "addr", "add", f"{PEER_ADDRESS}/{PREFIX}", "dev", "peer0")
    _run("ip", "-n", PEER_NS, "link", "set", "peer0", "up")
    _run("ip", "-n", PEER_NS, "link", "set", "lo", "up")
    try:
        yield LibvirtHost(Path(built.stdout.strip().splitlines()[-1]))
    finally:
        subprocess.run(["ip", "link", "del", UPLINK], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", PEER_NS], capture_output=True, check=False)
        if started is not None:  # only the daemons this fixture started
            started.terminate()
            try:
                started.wait(timeout=60)
            except subprocess.TimeoutExpired:
                started.kill()
        if original_conf is not None:
            QEMU_CONF.write_bytes(original_conf)
