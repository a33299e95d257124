"""Per-feature statistics of training rows, and the quantile bins live rows are counted in."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .neuron import Matrix

DEFAULT_BINS = 10


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


class Bins:
    """Every feature's bins at once, for counting live rows: padded to the widest feature.

    `width` columns per feature: the bins (unused ones stay empty), then the count of values
    below the training minimum and above the training maximum.
    """

    def __init__(self, features: list[FeatureStatistics]) -> None:
        self.n_features = len(features)
        self.bins = max(len(feature.fractions) for feature in features)
        self.width = self.bins + 2
        self._edges = [list(feature.edges) for feature in features]
        self._edge_arrays = [np.array(feature.edges) for feature in features]
        self._ranges = [(feature.min, feature.max) for feature in features]
        self.mins = np.array([low for low, _ in self._ranges])
        self.maxs = np.array([high for _, high in self._ranges])
        self.expected = np.zeros((self.n_features, self.bins))
        for row, feature in zip(self.expected, features, strict=True):
            row[: len(feature.fractions)] = feature.fractions
        self.used = np.zeros((self.n_features, self.bins), dtype=bool)
        for row, feature in zip(self.used, features, strict=True):
            row[: len(feature.fractions)] = True

    def cells(self, row: list[float]) -> list[int]:
        """The flat counter cells one row adds 1 to (bin, below, above), in pure Python."""
        cells, width, bins = [], self.width, self.bins
        for feature, value in enumerate(row):
            base = feature * width
            cells.append(base + bisect_right(self._edges[feature], value))
            low, high = self._ranges[feature]
            if value < low:
                cells.append(base + bins)
            elif value > high:
                cells.append(base + bins + 1)
        return cells

    def counts(self, inputs: Matrix) -> NDArray[np.int64]:
        """How many of `inputs` fall in each cell: a flat array of n_features x width counts."""
        table = np.zeros((self.n_features, self.width), dtype=np.int64)
        # Per feature, not one rows x features x edges comparison: that would hold 90 MB for
        # 10,000 rows of 1,000 features.
        for feature, (edges, column) in enumerate(zip(self._edge_arrays, inputs.T, strict=True)):
            index = np.searchsorted(edges, column, side="right")
            table[feature, : len(edges) + 1] = np.bincount(index, minlength=len(edges) + 1)
        table[:, self.bins] = np.count_nonzero(inputs < self.mins, axis=0)
        table[:, self.bins + 1] = np.count_nonzero(inputs > self.maxs, axis=0)
        return table.ravel()
