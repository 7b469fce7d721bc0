"""A LinuxHost over a fake sysfs tree and a fake rtnetlink kernel that agree: a VF
count written to sysfs makes the fake kernel report that many VFs, as the PF driver
does."""

from __future__ import annotations

from pathlib import Path

from pyroute2 import IPRoute

from iovctl.adapters.linux.host import LinuxHost
from iovctl.adapters.linux.netlink import NetlinkVfs

from .fake_rtnl import FakeRtnl
from .kernel_seams import KernelSysfs
from .sysfs_tree import HostSpec, Tree, build


def fake_linux_host(
    tmp_path: Path, spec: HostSpec, sysfs_class: type[KernelSysfs] = KernelSysfs
) -> tuple[LinuxHost, Tree, FakeRtnl]:
    tree = build(tmp_path, spec)
    fake = FakeRtnl(spec.pfs[0].num_vfs)
    sysfs = sysfs_class(
        tree,
        vf_create_timeout=2,
        poll_interval=0.01,
        on_num_vfs=lambda pf, count: fake.set_num_vfs(pf.ifindex, count),
    )
    host = LinuxHost(
        tmp_path,
        sysfs=sysfs,
        netlink=NetlinkVfs(lambda: IPRoute(use_socket=fake)),
        kernel_release=spec.kernel_release,
    )
    return host, tree, fake
