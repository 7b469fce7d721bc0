"""iovctl: Hyper-V style SR-IOV network I/O virtualization for Linux/KVM hosts."""

__version__ = "0.1.0"
