"""Streaming per-dimension mean and standard deviation with an exact parallel merge.

Each file contributes its count, mean and sum of squared deviations (M2), computed in float64
with numpy; partial results are combined with Chan et al.'s pairwise formula, which is exact in
exact arithmetic, so the order of files (or a split across workers) does not change the result
beyond float64 rounding. Memory is O(dim), independent of the dataset size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Moments", "guard_std", "DEFAULT_MIN_STD"]

# std below this is treated as a constant dimension (e.g. the original's delta features, which
# are float32 rounding noise of |x| < 1e-6) and replaced by 1.0, so (x - mean) / std stays ~0.
DEFAULT_MIN_STD = 1e-5


@dataclass
class Moments:
    """Count, mean and M2 of a stream of (rows, dim) arrays."""

    dim: int
    count: int = 0
    mean: np.ndarray = field(default=None)  # (dim,) float64
    m2: np.ndarray = field(default=None)  # (dim,) float64

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = np.zeros(self.dim)
        if self.m2 is None:
            self.m2 = np.zeros(self.dim)

    @classmethod
    def of(cls, x: np.ndarray) -> "Moments":
        """Moments of one (rows, dim) array, two-pass in float64."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a (rows, dim) array, got shape {x.shape}")
        if x.shape[0] == 0:
            return cls(x.shape[1])
        mean = x.mean(axis=0)
        return cls(x.shape[1], x.shape[0], mean, ((x - mean) ** 2).sum(axis=0))

    def merge(self, other: "Moments") -> "Moments":
        """Combine in place with another partial result (Chan et al. 1979); returns self."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge moments of dim {other.dim} into dim {self.dim}")
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.copy(), other.m2.copy()
            return self
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / n)
        self.m2 = self.m2 + other.m2 + delta * delta * (self.count * other.count / n)
        self.count = n
        return self

    def update(self, x: np.ndarray) -> "Moments":
        """Add the rows of one array."""
        return self.merge(Moments.of(x))

    def std(self, ddof: int = 1) -> np.ndarray:
        """Per-dimension standard deviation (unbiased by default, as the original torch.std)."""
        if self.count - ddof <= 0:
            raise ValueError(f"need more than {ddof} rows for a std, have {self.count}")
        return np.sqrt(self.m2 / (self.count - ddof))


def guard_std(std: np.ndarray, min_std: float = DEFAULT_MIN_STD) -> tuple[np.ndarray, np.ndarray]:
    """Replace std < min_std (and non-finite std) by 1.0 -> (guarded std, mask of guarded dims).

    With std 1 a (near-)constant dimension normalises to x - mean, i.e. ~0, instead of rounding
    noise blown up to O(1) or NaN, and de-normalisation stays exact.
    """
    std = np.asarray(std, dtype=np.float64)
    bad = ~np.isfinite(std) | (std < min_std)
    return np.where(bad, 1.0, std), bad
