"""Per-feature statistics of training rows, and the quantile bins live rows are counted in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .neuron import Matrix

DEFAULT_BINS = 10
# A batch of more rows is counted on a systematic sample of them (every k-th row, each standing
# for k): enough rows for a score of their own, at ~1 % of a 10,000-row predict's time.
SAMPLE_ROWS = 256
# Up to this many features one numpy search per feature; past it one comparison of every value
# with every end, unless that would compare more than _COMPARED_AT_ONCE pairs (a search per
# feature again: 1,000 features of 100 bins on a 257-row sample take 15 ms so, 70 ms and
# 26 MB compared at once).
_SEARCH_PER_FEATURE = 32
_COMPARED_AT_ONCE = 1 << 18


@dataclass(frozen=True)
class FeatureStatistics:
    """One feature of the training rows: moments, range and its quantile bins.

    Bin i holds the values with exactly i edges at or below them: (-inf, e1), [e1, e2), ...,
    [e_last, inf). The edges are training values at the quantiles k / bins (so a feature with
    few distinct values gets fewer, wider bins), and `fractions` the training rows' share in
    each: len(fractions) == len(edges) + 1.
    """

    count: int
    mean: float
    std: float
    min: float
    max: float
    edges: tuple[float, ...]
    fractions: tuple[float, ...]


def describe(inputs: Matrix, bins: int = DEFAULT_BINS) -> list[FeatureStatistics]:
    """Statistics of every column of `inputs` (rows x features), in `bins` quantile bins."""
    rows = len(inputs)
    quantiles = np.arange(1, bins) / bins
    # inverted_cdf: every edge is a value the feature took, so a 0/1 feature gets edges 0 and 1.
    cuts = np.quantile(inputs, quantiles, axis=0, method="inverted_cdf").T
    features = []
    for column, values in zip(inputs.T, cuts, strict=True):
        edges = np.unique(values)
        counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1)
        features.append(
            FeatureStatistics(
                count=rows,
                mean=float(column.mean()),
                std=float(column.std()),
                min=float(column.min()),
                max=float(column.max()),
                edges=tuple(edges.tolist()),
                fractions=tuple((counts / rows).tolist()),
            )
        )
    return features


def sample(inputs: Matrix) -> tuple[Matrix, float]:
    """The rows to count of a batch, and how many rows each stands for.

    Up to 2 x SAMPLE_ROWS - 1 rows, all of them; past that every k-th row (a copy: the batch
    itself is not kept), each standing for len(inputs) / len(sample) rows.
    """
    stride = len(inputs) // SAMPLE_ROWS
    if stride <= 1:
        return inputs, 1.0
    rows = np.ascontiguousarray(inputs[::stride])
    return rows, len(inputs) / len(rows)


class Bins:
    """Every feature's bins at once, for counting live rows.

    A flat array of cells, `width` per feature: its bins (padded to the widest feature's), then
    the values below the training minimum and above the maximum. One search per value finds
    all three: in a feature's ends [min, edges..., just above max], a value with j ends at or
    below it is in bin j - 1 (bin 0 for j = 0, below; the last bin for j = all, above).
    """

    def __init__(self, features: list[FeatureStatistics]) -> None:
        self.n_features = len(features)
        self.bins = max(len(feature.fractions) for feature in features)
        self.width = self.bins + 2
        self._ends = [(f.min, *f.edges, float(np.nextafter(f.max, np.inf))) for f in features]
        self._arrays = [np.array(ends) for ends in self._ends]
        self._top = np.array([len(ends) for ends in self._ends])
        self._padded = np.full((self.n_features, self.bins + 1), np.inf)
        for row, ends in zip(self._padded, self._ends, strict=True):
            row[: len(ends)] = ends
        self.expected = np.zeros((self.n_features, self.bins))
        self.used = np.zeros((self.n_features, self.bins), dtype=bool)
        for feature, statistics in enumerate(features):
            self.expected[feature, : len(statistics.fractions)] = statistics.fractions
            self.used[feature, : len(statistics.fractions)] = True

    def counts(self, rows: Matrix, weight: float = 1.0) -> NDArray[np.float64]:
        """How many of `rows` fall in each cell, each row standing for `weight` rows."""
        per_end = self._per_end(rows)  # features x (bins + 2): j = 0 ... bins + 1
        everyone = np.arange(self.n_features)
        below, above = per_end[:, 0], per_end[everyone, self._top]
        table = np.zeros((self.n_features, self.width))
        table[:, : self.bins + 1] = per_end[:, 1:]  # j ends at or below: bin j - 1
        table[everyone, self._top - 1] -= above  # a value above the range is in the last bin
        table[everyone, self._top - 2] += above
        table[:, 0] += below
        table[:, self.bins] = below
        table[:, self.bins + 1] = above
        return (table * weight).ravel()

    def _per_end(self, sample: Matrix) -> NDArray[np.int64]:
        """Per feature, how many values have j of its ends at or below them, for every j."""
        size = self.bins + 2
        if self.n_features <= _SEARCH_PER_FEATURE or sample.size * size > _COMPARED_AT_ONCE:
            found = [
                np.bincount(np.searchsorted(ends, column, side="right"), minlength=size)
                for ends, column in zip(self._arrays, sample.T, strict=True)
            ]
            return np.stack(found)
        compared = sample[:, :, None] >= self._padded[None, :, :]
        found = np.count_nonzero(compared, axis=2) + np.arange(self.n_features) * size
        counts = np.bincount(found.ravel(), minlength=self.n_features * size)
        return counts.reshape(self.n_features, size)
