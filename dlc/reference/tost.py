"""Equivalence of two backends' final metrics over seeds: two one-sided tests (TOST) on paired differences.

For seeds s_1..s_n, d_i = metric(torch, s_i) − metric(keras, s_i). Equivalence within a margin δ > 0 is the
claim |μ_d| < δ; TOST rejects both H0−: μ_d ≤ −δ (t₋ = (d̄ + δ)/se, p₋ = P(T > t₋)) and H0+: μ_d ≥ δ
(t₊ = (d̄ − δ)/se, p₊ = P(T < t₊)) with Student's t on n − 1 degrees of freedom, se = s_d/√n; p = max(p₋, p₊)
and equivalence is shown at level α when p < α, the same as the (1 − 2α) confidence interval of μ_d lying
inside (−δ, δ). Differences with no spread (every d_i equal, e.g. runs that never separated) have se = 0:
equivalent when |d̄| < δ (p = 0), else not (p = 1).

Pure Python: the t distribution from the regularized incomplete beta function (Lentz's continued fraction,
as in Numerical Recipes §6.4), checked against scipy.stats.t in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), a, b > 0, 0 ≤ x ≤ 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
                     + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (0 < q < 1), by bisection on t_cdf."""
    lo, hi = -1.0, 1.0
    while t_cdf(lo, df) > q:
        lo *= 2.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


def tost_paired(differences: Sequence[float], margin: float, alpha: float = 0.05) -> dict:
    """TOST of mean(differences) within (−margin, margin): the statistics, p-values, the (1 − 2α) interval
    and a verdict: "equivalent" (p < α), "different" (the interval lies wholly outside the margins: a
    difference larger than the margin is shown) or "inconclusive"."""
    n = len(differences)
    if n < 2:
        raise ValueError(f"a paired test needs at least 2 seeds, got {n}")
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    d = [float(v) for v in differences]
    mean = math.fsum(d) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in d) / (n - 1))
    se = sd / math.sqrt(n)
    df = n - 1
    # a spread below rounding of the mean is none (differences that are all equal up to the last bit)
    if se <= 1e-15 * max(abs(mean), margin):
        p_lower = 0.0 if mean > -margin else 1.0
        p_upper = 0.0 if mean < margin else 1.0
        t_lower = t_upper = None
        ci = (mean, mean)
    else:
        t_lower, t_upper = (mean + margin) / se, (mean - margin) / se
        p_lower, p_upper = 1.0 - t_cdf(t_lower, df), t_cdf(t_upper, df)
        half = t_ppf(1.0 - alpha, df) * se
        ci = (mean - half, mean + half)
    p = max(p_lower, p_upper)
    if p < alpha:
        verdict = "equivalent"
    elif ci[0] >= margin or ci[1] <= -margin:
        verdict = "different"
    else:
        verdict = "inconclusive"
    return {"n": n, "df": df, "differences": d, "mean_difference": mean, "sd_difference": sd,
            "margin": margin, "alpha": alpha, "t_lower": t_lower, "t_upper": t_upper,
            "p_lower": p_lower, "p_upper": p_upper, "p_value": p,
            "ci": list(ci), "ci_level": 1.0 - 2.0 * alpha, "verdict": verdict}
