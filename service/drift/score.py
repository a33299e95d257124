"""The population stability index of live counts against the training shares."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# A bin empty on one side would make the logarithm infinite; the usual floor for a share.
EPSILON = 1e-4


def stability_index(
    live: NDArray[np.float64], expected: NDArray[np.float64], used: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """PSI per feature: the sum over bins of (live - expected) x ln(live / expected).

    `live` holds counts (features x bins), `expected` the training shares, `used` the bins a
    feature has (features with few distinct values have fewer). 0 means the same shares; the
    index is symmetric, and a shift that moves a tenth of the rows one bin over scores ~0.05.
    """
    rows = live.sum(axis=1, keepdims=True)
    actual = np.maximum(live / np.maximum(rows, 1), EPSILON)
    expected = np.maximum(expected, EPSILON)
    terms = np.where(used, (actual - expected) * np.log(actual / expected), 0.0)
    return np.asarray(terms.sum(axis=1), dtype=np.float64)
