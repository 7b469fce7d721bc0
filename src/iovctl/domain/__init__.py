"""The pure core of iovctl: model, rules and plans.

Nothing in this package performs I/O. It must not import os, subprocess, sqlite3,
pyroute2, libvirt, yaml or any adapter; adapters and services import it, never the
other way round.
"""
