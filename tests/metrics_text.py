"""One reader of /metrics text for every test: prometheus_client's own parser, not regexes."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

_MISSING = object()


def _key(sample: str) -> tuple[str, dict[str, str]]:
    """'name{label="value",...}' as (name, labels), read by the same parser."""
    [family] = text_string_to_metric_families(f"{sample} 0\n")
    [parsed] = family.samples
    return parsed.name, parsed.labels


def sample(text: str, key: str, default: float | object = _MISSING) -> float:
    """The one value of ``key`` (a name, with labels in braces if it has any) in ``text``.

    An absent sample is ``default`` if one is given, else a failed assertion; so is a sample
    that appears more than once.
    """
    name, labels = _key(key)
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels == labels
    ]
    if not values and default is not _MISSING:
        return float(default)  # type: ignore[arg-type]
    assert len(values) == 1, f"{key} appears {len(values)} times in the metrics text"
    return float(values[0])
