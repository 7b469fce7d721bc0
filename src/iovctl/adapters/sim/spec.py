"""Loading host specs for the simulated host: built-in ones by name, or YAML files.

The format itself, and its validation, live in ``iovctl.domain.host_spec``.
"""

from __future__ import annotations

import json
from importlib import resources

from iovctl.adapters.yaml_file import read_yaml_file
from iovctl.domain.host_spec import (
    AdapterSpec,
    HostSpec,
    parse_spec,
    spec_document,
    spec_error,
)

__all__ = [
    "BUILTIN_SPECS",
    "AdapterSpec",
    "HostSpec",
    "load_spec",
    "parse_spec",
    "spec_document",
    "spec_from_json",
    "spec_to_json",
]

BUILTIN_SPECS = ("demo", "igb", "no-iommu", "bios-off")


def load_spec(name_or_path: str) -> HostSpec:
    """A built-in spec by name, or a YAML file by path."""
    import yaml

    if name_or_path in BUILTIN_SPECS:
        text = resources.files("iovctl.adapters.sim").joinpath(f"specs/{name_or_path}.yaml")
        return parse_spec(yaml.safe_load(text.read_text()))
    doc = read_yaml_file(
        name_or_path,
        code="unknown-host-spec",
        kind="host spec",
        builtins=BUILTIN_SPECS,
        invalid=spec_error,
    )
    return parse_spec(doc)


def spec_to_json(spec: HostSpec) -> str:
    return json.dumps(spec.document, sort_keys=True)


def spec_from_json(text: str) -> HostSpec:
    return parse_spec(json.loads(text))
