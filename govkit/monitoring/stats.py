"""The drift tests monitoring runs, computed from a window's counts of values (its sketch) exactly
as Evidently 0.7 computes them from the raw columns (its legacy stattests, read from source:
`ks_stattest`, `wasserstein_distance_norm`, `chisquare_stattest`, `z_stattest`, `jensenshannon`,
`psi`, `utils.get_binned_data`, and `registry._get_default_stattest` for which test a column
gets), with scipy doing the arithmetic. A window's values are expanded from its counts, so the
statistics are those of the calls themselves, not of a histogram of them.

Evidently picks the test by the reference's size: at most 1,000 reference values, the KS test
(numbers) or chi-square (categories; the z-test for two values) at p < 0.05; above that, the
normed Wasserstein distance (numbers) or the Jensen-Shannon distance (categories), drift at 0.1
or more. PSI is reported beside it in the board's bands (under 0.1 none, up to 0.25 moderate,
above significant)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["Counts", "chi_square_p_value", "default_test", "drift", "jensen_shannon", "ks_p_value", "psi", "psi_band",
           "quantile", "two_proportion_p_value", "wasserstein_normed", "z_p_value"]

Counts = Mapping[Any, int]  # value -> how many calls had it

SMALL_REFERENCE = 1000  # Evidently: at most this many reference values, a p-value test; above, a distance


def _expanded(counts: Counts) -> Any:
    import numpy as np

    values = [v for v, n in counts.items() if n > 0]
    return np.repeat(np.asarray(values, dtype=float), [counts[v] for v in values])


def _total(counts: Counts) -> int:
    return sum(n for n in counts.values() if n > 0)


def ks_p_value(reference: Counts, current: Counts) -> float:
    """The two-sample Kolmogorov-Smirnov test's two-sided p-value (scipy's ks_2samp)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(_expanded(reference), _expanded(current))[1])


def _weighted(counts: Counts) -> tuple[Any, Any]:
    import numpy as np

    values = sorted(v for v, n in counts.items() if n > 0)
    return np.asarray(values, dtype=float), np.asarray([counts[v] for v in values], dtype=float)


def wasserstein_normed(reference: Counts, current: Counts) -> float:
    """The first Wasserstein distance divided by the reference's standard deviation (at least
    0.001), from the distinct values and their counts (scipy's weighted form: the same distance
    as over every call, without expanding them)."""
    import numpy as np
    from scipy.stats import wasserstein_distance

    ref_values, ref_counts = _weighted(reference)
    cur_values, cur_counts = _weighted(current)
    mean = np.sum(ref_values * ref_counts) / ref_counts.sum()
    std = float(np.sqrt(np.sum(ref_counts * (ref_values - mean) ** 2) / ref_counts.sum()))
    distance = wasserstein_distance(ref_values, cur_values, ref_counts, cur_counts)
    return float(distance / max(std, 0.001))


def _sturges_edges(reference: Counts, current: Counts) -> Any:
    """numpy's histogram_bin_edges(both samples, "sturges"), from the counts: it needs only the
    samples' size, minimum and maximum."""
    import numpy as np

    values = [v for c in (reference, current) for v, n in c.items() if n > 0]
    first, last = float(min(values)), float(max(values))
    size = _total(reference) + _total(current)
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (last - first) / (np.log2(size) + 1.0)
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=float)


def _keys(reference: Counts, current: Counts) -> list[Any]:
    return sorted({k for k, n in reference.items() if n > 0} | {k for k, n in current.items() if n > 0}, key=str)


def chi_square_p_value(reference: Counts, current: Counts) -> float:
    """Pearson's chi-square: the current counts against the reference's proportions scaled to them."""
    from scipy.stats import chisquare

    keys = _keys(reference, current)
    scale = _total(current) / _total(reference)
    return float(chisquare([current.get(k, 0) for k in keys], [reference.get(k, 0) * scale for k in keys])[1])


def z_p_value(reference: Counts, current: Counts) -> float:
    """Evidently's z-test of a column with two values: is the share of the first (sorted) the same?"""
    keys = _keys(reference, current)
    if len(keys) == 1:
        return 1.0
    n1, n2 = _total(reference), _total(current)
    return two_proportion_p_value(n1 - reference.get(keys[0], 0), n1, n2 - current.get(keys[0], 0), n2)


def two_proportion_p_value(hits_reference: int, n_reference: int, hits_current: int, n_current: int) -> float:
    """The two-sided p-value of the pooled two-proportion z-test (Evidently's z-test)."""
    from scipy.stats import norm

    if not n_reference or not n_current:
        return 1.0
    p1, p2 = hits_reference / n_reference, hits_current / n_current
    pooled = (p1 * n_reference + p2 * n_current) / (n_reference + n_current)
    spread = pooled * (1 - pooled) * (1.0 / n_reference + 1.0 / n_current)
    if spread == 0:
        return 1.0  # both all hits or all misses: nothing differs
    return float(2 * (1 - norm.cdf(abs((p1 - p2) / math.sqrt(spread)))))


def _binned(reference: Counts, current: Counts, numeric: bool, fill_zeroes: bool) -> tuple[Any, Any]:
    """Evidently's get_binned_data: Sturges bins over both samples for a number with more than 20
    reference values, else each value its own bin; empty bins filled with a tiny share for PSI."""
    import numpy as np

    n_ref, n_cur = _total(reference), _total(current)
    if numeric and sum(1 for n in reference.values() if n > 0) > 20:
        bins = _sturges_edges(reference, current)
        (ref_values, ref_counts), (cur_values, cur_counts) = _weighted(reference), _weighted(current)
        ref_share = np.histogram(ref_values, bins, weights=ref_counts)[0] / n_ref
        cur_share = np.histogram(cur_values, bins, weights=cur_counts)[0] / n_cur
    else:
        keys = _keys(reference, current)
        ref_share = np.array([reference.get(k, 0) / n_ref for k in keys])
        cur_share = np.array([current.get(k, 0) / n_cur for k in keys])
    if fill_zeroes:
        for share in (ref_share, cur_share):
            smallest = min(share[share != 0])
            np.place(share, share == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return ref_share, cur_share


def psi(reference: Counts, current: Counts, *, numeric: bool) -> float:
    """The population stability index over Evidently's bins."""
    import numpy as np

    ref, cur = _binned(reference, current, numeric, True)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


def jensen_shannon(reference: Counts, current: Counts, *, numeric: bool) -> float:
    """The Jensen-Shannon distance (natural log) over Evidently's bins."""
    from scipy.spatial import distance

    ref, cur = _binned(reference, current, numeric, False)
    return float(distance.jensenshannon(ref, cur))


def psi_band(value: float, moderate: float, significant: float) -> str:
    return "significant" if value > significant else "moderate" if value >= moderate else "none"


def default_test(reference: Counts, current: Counts, *, numeric: bool) -> str:
    """The test Evidently's data-drift preset picks for this column (registry._get_default_stattest)."""
    distinct = len(_keys(reference, current))
    if _total(reference) <= SMALL_REFERENCE:
        if numeric and distinct > 5:
            return "ks"
        return "chisquare" if distinct > 2 else "z"
    if numeric and distinct > 5:
        return "wasserstein"
    return "jensenshannon"


_TESTS = {"ks": (lambda r, c, numeric: ks_p_value(r, c), "p_value"),
          "chisquare": (lambda r, c, numeric: chi_square_p_value(r, c), "p_value"),
          "z": (lambda r, c, numeric: z_p_value(r, c), "p_value"),
          "wasserstein": (lambda r, c, numeric: wasserstein_normed(r, c), "distance"),
          "jensenshannon": (lambda r, c, numeric: jensen_shannon(r, c, numeric=numeric), "distance")}


def drift(reference: Counts, current: Counts, *, numeric: bool, p_value: float = 0.05,
          wasserstein: float = 0.1, jensen_shannon_limit: float = 0.1) -> dict[str, Any]:
    """Evidently's default test for the column, its value, and whether it says the column drifted
    (a p-value below `p_value` for KS, chi-square and z, at or below it for KS as Evidently has it;
    a distance at or above its limit)."""
    name = default_test(reference, current, numeric=numeric)
    compute, kind = _TESTS[name]
    value = compute(reference, current, numeric)
    if kind == "p_value":
        drifted = value <= p_value if name == "ks" else value < p_value
        limit = p_value
    else:
        limit = wasserstein if name == "wasserstein" else jensen_shannon_limit
        drifted = value >= limit
    return {"test": name, kind: value, "threshold": limit, "drifted": bool(drifted)}


def quantile(counts: Counts, q: float) -> float | None:
    """The nearest-rank quantile: the smallest value with at least q of the calls at or below it."""
    total = _total(counts)
    if not total:
        return None
    rank = max(1, math.ceil(round(q * total, 9)))
    seen = 0
    for value in sorted(v for v, n in counts.items() if n > 0):
        seen += counts[value]
        if seen >= rank:
            return float(value)
    return None  # pragma: no cover - the ranks sum to the total
