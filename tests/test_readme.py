"""The documentation stays true to the code: every setting and metric listed, every link whole."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import service.metrics  # noqa: F401  (registers the metrics)
from service.drift import DriftCollector, DriftReport, FeatureDrift
from service.settings import Settings

ROOT = Path(__file__).parents[1]
SETTINGS = (ROOT / "docs/settings.md").read_text(encoding="utf-8")
METRICS = (ROOT / "docs/metrics.md").read_text(encoding="utf-8")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target): the target up to a space, ")" or "#"; the fragment is not checked.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s#]*)(?:#[^)\s]*)?\)")


def test_every_setting_is_in_the_table_with_its_default() -> None:
    for name, field in Settings.model_fields.items():
        row = re.search(rf"^\| `NEURON_{name.upper()}` \| ([^|]+) \|", SETTINGS, re.MULTILINE)
        assert row, f"NEURON_{name.upper()} missing from docs/settings.md"
        default = field.default
        shown = row.group(1).strip().strip("`")
        if default is None:
            assert shown == "unset"
        elif isinstance(default, bool):
            assert shown == str(default).lower()
        else:
            assert shown == str(default), f"NEURON_{name.upper()}: docs {shown} != {default}"


def test_every_metric_is_documented() -> None:
    names = {family.name for family in REGISTRY.collect() if family.name.startswith("neuron_")}
    assert names
    for name in names:
        suffix = "_total" if f"`{name}_total" in METRICS else ""
        assert f"`{name}{suffix}" in METRICS, name


def test_every_drift_metric_is_documented() -> None:
    """The drift gauges are computed at scrape time by a collector, not registered constants."""
    feature = FeatureDrift(name="x0", score=0.5, drifting=True, out_of_range=0.1)
    report = DriftReport(
        model_version=1, baseline=True, message="", threshold=0.25, window_seconds=60,
        rows=300, min_rows=200, drifting=1, features=[feature],
    )  # fmt: skip
    names = {family.name for family in DriftCollector(lambda: report, 10).collect()}
    assert len(names) == 6
    for name in names:
        assert f"`{name}" in METRICS, name


def relative_links(text: str) -> list[str]:
    """Link targets in Markdown text that are paths in this repository (not URLs, not #...)."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [match.group(1) for match in LINK.finditer(text)]
    return [t for t in targets if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(page: Path) -> None:
    links = relative_links(page.read_text(encoding="utf-8"))
    broken = [t for t in links if not (page.parent / t).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing {broken}"


def test_the_readme_links_every_docs_page() -> None:
    """Also keeps the link check from passing by finding no link at all."""
    linked = {(ROOT / t).resolve() for t in relative_links(PAGES[0].read_text(encoding="utf-8"))}
    docs = set(PAGES[1:])
    assert docs, "no docs/*.md pages"
    assert docs <= linked, sorted(str(page) for page in docs - linked)


def test_which_links_are_checked() -> None:
    text = (
        "[a](docs/x.md#y) [b](https://example.org/p) [c](../y.md) [d](#here) "
        "[e](mailto:a@b.c) `[f](g)`\n```sh\n[h](i)\n```\n[j](RELIABILITY.md)"
    )
    assert relative_links(text) == ["docs/x.md", "../y.md", "RELIABILITY.md"]
