"""The simulated host: SR-IOV hardware and VMs in SQLite, with kernel-exact rules."""
