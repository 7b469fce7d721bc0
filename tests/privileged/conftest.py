"""Fixtures of the privileged suite (helpers live in ``netns_lab.py``)."""

from netns_lab import make_lab

__all__ = ["make_lab"]
