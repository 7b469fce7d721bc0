"""Fixtures of the privileged suite (helpers live in ``lab.py``)."""

from tests.privileged.lab import make_lab

__all__ = ["make_lab"]
