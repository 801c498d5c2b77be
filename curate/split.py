"""Identity-disjoint split with fixed proportions (paper: 805 / 50 / 150 of 1,005 identities)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["split_counts", "split_identities"]


def split_counts(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Integer identity counts per split summing to ``n`` (largest-remainder rounding).

    A split with a positive weight gets at least one identity whenever ``n`` allows it, so a small build
    still has a test set.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"split weights must be non-negative with a positive sum, got {dict(weights)}")
    names = list(weights)
    total = float(sum(weights.values()))
    exact = np.array([weights[k] / total * n for k in names])
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in order[: n - int(counts.sum())]:
        counts[i] += 1
    positive = [i for i, k in enumerate(names) if weights[k] > 0]
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                donor = max(range(len(names)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] += 1
    return {k: int(c) for k, c in zip(names, counts, strict=True)}


def split_identities(identities: Sequence[str], weights: Mapping[str, float], seed: int) -> dict[str, str]:
    """Assign each identity to one split: ``{identity: split}``.

    The result depends only on the set of identities, the weights and the seed (not on input order).
    """
    if len(set(identities)) != len(identities):
        raise ValueError("identities must be unique")
    ordered = sorted(identities)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    counts = split_counts(len(ordered), weights)
    assignment: dict[str, str] = {}
    start = 0
    for split, count in counts.items():
        for i in perm[start : start + count]:
            assignment[ordered[i]] = split
        start += count
    return assignment
