"""The README stays true to the code: every setting and every metric is listed."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY

import service.metrics  # noqa: F401  (registers the metrics)
from service.settings import Settings

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_table_with_its_default() -> None:
    for name, field in Settings.model_fields.items():
        row = re.search(rf"^\| `NEURON_{name.upper()}` \| ([^|]+) \|", README, re.MULTILINE)
        assert row, f"NEURON_{name.upper()} missing from the README"
        default = field.default
        shown = row.group(1).strip().strip("`")
        if default is None:
            assert shown == "unset"
        elif isinstance(default, bool):
            assert shown == str(default).lower()
        else:
            assert shown == str(default), f"NEURON_{name.upper()}: README {shown} != {default}"


def test_every_metric_is_documented() -> None:
    names = {family.name for family in REGISTRY.collect() if family.name.startswith("neuron_")}
    assert names
    for name in names:
        suffix = "_total" if f"`{name}_total" in README else ""
        assert f"`{name}{suffix}" in README, name
