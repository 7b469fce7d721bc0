"""The libvirt VM runtime: VMs are libvirt domains, NICs virtio-net failover pairs
whose fast half is a hot-plugged VF.

Modules: ``connection`` (the only import of libvirt-python, an optional dependency;
event loop; error translation), ``domain_xml`` (pure: domain and device XML, iovctl's
ownership record), ``lifecycle`` (pure: events as power changes), ``facts`` (what
readiness judges), ``runtime`` (``LibvirtVmRuntime``). Importing this package needs
no libvirt-python; opening a connection does.
"""
