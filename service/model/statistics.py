"""Per-feature statistics of training rows, and the quantile bins live rows are counted in."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .neuron import Matrix

DEFAULT_BINS = 10
# A batch of more rows is counted on a systematic sample of them (every k-th row, each standing
# for k): enough rows for a score of their own, at ~1 % of a 10,000-row predict's time.
SAMPLE_ROWS = 256
# Up to this many features one numpy search per feature; past it one comparison of every value
# with every end (at most 511 x 1,000 x 102 booleans for the widest model the limits allow).
_SEARCH_PER_FEATURE = 32


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
    """Every feature's bins at once, for counting live rows.

    A flat array of cells, `width` per feature: its bins (padded to the widest feature's), then
    the values below the training minimum and above the maximum. One search per value finds
    all three: in [min, edges..., just above max], `j` edges at or below x mean bin j - 1
    (bin 0 for j = 0, the last bin past the end) and below or above the range at either end.
    """

    def __init__(self, features: list[FeatureStatistics]) -> None:
        self.n_features = len(features)
        self.bins = max(len(feature.fractions) for feature in features)
        self.width = self.bins + 2
        self._ends = [(f.min, *f.edges, float(np.nextafter(f.max, np.inf))) for f in features]
        self._top = [len(ends) for ends in self._ends]
        self._arrays = [np.array(ends) for ends in self._ends]
        longest = max(self._top)
        self._padded = np.full((self.n_features, longest), np.inf)
        # For each feature and j, the cells it counts in: its bin, and below or above.
        self._cells: list[list[tuple[int, ...]]] = []
        self._map = np.zeros((self.n_features, longest + 1, self.width), dtype=np.int64)
        for feature, ends in enumerate(self._ends):
            self._padded[feature, : len(ends)] = ends
            cells = [_cells_of(j, len(ends), self.bins) for j in range(longest + 1)]
            for j, hits in enumerate(cells):
                self._map[feature, j, list(hits)] = 1
            self._cells.append([tuple(feature * self.width + c for c in hits) for hits in cells])
        self._offsets = np.arange(self.n_features) * (longest + 1)
        self.expected = np.zeros((self.n_features, self.bins))
        self.used = np.zeros((self.n_features, self.bins), dtype=bool)
        for feature, statistics in enumerate(features):
            self.expected[feature, : len(statistics.fractions)] = statistics.fractions
            self.used[feature, : len(statistics.fractions)] = True

    def cells(self, row: list[float]) -> list[int]:
        """The cells one row adds 1 to, in pure Python (a few rows: cheaper than numpy)."""
        cells: list[int] = []
        for feature, value in enumerate(row):
            cells += self._cells[feature][bisect_right(self._ends[feature], value)]
        return cells

    def counts(self, inputs: Matrix) -> NDArray[np.float64]:
        """How many of `inputs` fall in each cell: a big batch by a weighted sample of rows."""
        sample = inputs[:: max(1, len(inputs) // SAMPLE_ROWS)]
        per_end = self._per_end(sample)
        table = np.einsum("fj,fjw->fw", per_end, self._map).ravel()
        return np.asarray(table * (len(inputs) / len(sample)), dtype=np.float64)

    def _per_end(self, sample: Matrix) -> NDArray[np.int64]:
        """Per feature, how many values have j of its ends at or below them, for every j."""
        size = self._map.shape[1]
        if self.n_features <= _SEARCH_PER_FEATURE:
            found = [
                np.bincount(np.searchsorted(ends, column, side="right"), minlength=size)
                for ends, column in zip(self._arrays, sample.T, strict=True)
            ]
            return np.stack(found)
        compared = sample[:, :, None] >= self._padded[None, :, :]
        found = np.count_nonzero(compared, axis=2) + self._offsets
        counts = np.bincount(found.ravel(), minlength=self.n_features * size)
        return counts.reshape(self.n_features, size)


def _cells_of(j: int, ends: int, bins: int) -> tuple[int, ...]:
    """The cells of a value with j of its feature's `ends` at or below it."""
    last = ends - 2  # the feature's last bin
    if j == 0:
        return (0, bins)  # bin 0, below the minimum
    if j >= ends:
        return (last, bins + 1)  # the last bin, above the maximum
    return (j - 1,)
