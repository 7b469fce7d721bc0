"""What readiness judges about a libvirt connection: libvirt's and the hypervisor's
versions, whether a q35 machine type is offered, and whether the URI opens at all.
Judging them (libvirt >= 6.1, QEMU >= 4.2 for teaming) is ``domain.readiness``'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from xml.etree import ElementTree as ET

from iovctl.adapters.libvirt.connection import error_text
from iovctl.adapters.libvirt.domain_xml import is_q35
from iovctl.domain.model import RuntimeFacts
from iovctl.errors import IovctlError


def version_triple(number: int) -> tuple[int, int, int]:
    """libvirt's packed version (major * 1,000,000 + minor * 1,000 + micro)."""
    return number // 1_000_000, number // 1_000 % 1_000, number % 1_000


def offers_q35(capabilities_xml: str) -> bool:
    """The capabilities list a q35 machine type for an x86_64 guest."""
    root = ET.fromstring(capabilities_xml)
    for guest in root.findall("guest"):
        arch = guest.find("arch")
        if arch is None or arch.get("name") != "x86_64":
            continue
        for machine in arch.iter("machine"):
            names = [machine.text or "", machine.get("canonical", "")]
            if any(is_q35(n) for n in names):
                return True
    return False


def offers_kvm(capabilities_xml: str) -> bool:
    """The capabilities list a ``kvm`` domain type for x86_64 guests."""
    root = ET.fromstring(capabilities_xml)
    for guest in root.findall("guest"):
        arch = guest.find("arch")
        if (
            arch is not None
            and arch.get("name") == "x86_64"
            and any(d.get("type") == "kvm" for d in arch.findall("domain"))
        ):
            return True
    return False


def runtime_facts(uri: str, connect: Callable[[], Any]) -> RuntimeFacts:
    """Facts of the libvirt at ``uri``; ``connect`` gives its open Connection (or
    raises IovctlError, which becomes ``reachable=False`` with the reason)."""
    try:
        connection = connect()
    except IovctlError as exc:
        return RuntimeFacts(kind="libvirt", location=uri, reachable=False, error=exc.message)
    conn = connection.conn
    try:
        capabilities = conn.getCapabilities()
        return RuntimeFacts(
            kind="libvirt",
            location=uri,
            manager_version=version_triple(int(conn.getLibVersion())),
            hypervisor_version=version_triple(int(conn.getVersion())),
            q35_machine=offers_q35(capabilities),
        )
    except connection.error as exc:
        return RuntimeFacts(kind="libvirt", location=uri, reachable=False, error=error_text(exc))
