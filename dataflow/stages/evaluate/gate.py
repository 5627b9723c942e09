"""The review gate: unqualified rate of the hand-reviewed sample with a Clopper-Pearson interval.

Ziya2 iterates until unqualified samples are below 0.1%. A rate measured on a sample is an estimate,
so next to the point estimate k/n we report the exact (Clopper-Pearson) binomial interval. Which of
the two is gated is `evaluate.gate_on` (`upper` by default: with 0 failures the upper bound only drops
below 0.1% after ~3,700 reviews, which is what "below 0.1%" can honestly claim).

scipy is not a dependency: the beta quantile is found by bisection on the regularized incomplete beta
function, evaluated with the Lentz continued fraction (Numerical Recipes §6.4) over math.lgamma.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Mapping

_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 10_000


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for I_x(a, b) (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_ITER + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0 (got {a}, {b})")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # the fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float, tol: float = 1e-12) -> float:
    """Quantile of Beta(a, b): the x with I_x(a, b) = q, by bisection (I_x is monotone in x)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial interval for k successes in n trials."""
    if n <= 0:
        raise ValueError("Clopper-Pearson needs at least one reviewed sample")
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is outside [0, n={n}]")
    alpha = 1.0 - confidence
    lower = 0.0 if k == 0 else beta_ppf(alpha / 2, k, n - k + 1)
    upper = 1.0 if k == n else beta_ppf(1 - alpha / 2, k + 1, n - k)
    return lower, upper


def reviews_needed(threshold: float, confidence: float = 0.95) -> int:
    """Smallest n whose upper bound with zero failures, 1 - (alpha/2)^(1/n), is below `threshold`."""
    alpha = 1.0 - confidence
    return math.floor(math.log(alpha / 2) / math.log1p(-threshold)) + 1


class LabelError(ValueError):
    """A reviewed sheet that cannot be read unambiguously (unknown verdict, unknown id)."""


def classify(verdict: str | None, qualified: Iterable[str], unqualified: Iterable[str]) -> bool | None:
    """True = qualified, False = unqualified, None = not reviewed yet (empty)."""
    v = (verdict or "").strip().lower()
    if not v:
        return None
    if v in {str(x).lower() for x in qualified}:
        return True
    if v in {str(x).lower() for x in unqualified}:
        return False
    raise LabelError(f"unknown verdict {verdict!r}; use one of {list(qualified)} or {list(unqualified)}")


def evaluate_labels(rows: Iterable[Mapping], cfg: Mapping) -> dict:
    """Gate decision over reviewed rows (dicts with verdict, reason, source, source_type, lang, quality, rule_flags)."""
    reviewed = unreviewed = bad = 0
    by = {"source": Counter(), "source_type": Counter(), "lang": Counter(), "quality": Counter(),
          "rule_flag": Counter(), "reason": Counter()}
    unqualified_ids = []
    for i, row in enumerate(rows, 1):
        try:
            ok = classify(row.get("verdict"), cfg["qualified_labels"], cfg["unqualified_labels"])
        except LabelError as e:
            raise LabelError(f"row {i} (id {row.get('id')}): {e}") from None
        if ok is None:
            unreviewed += 1
            continue
        reviewed += 1
        if ok:
            continue
        bad += 1
        unqualified_ids.append(row.get("id"))
        for key in ("source", "source_type", "lang", "quality"):
            by[key][str(row.get(key) or "unknown")] += 1
        for flag in split_flags(row.get("rule_flags")):
            by["rule_flag"][flag] += 1
        by["reason"][(row.get("reason") or "").strip() or "(no reason given)"] += 1

    threshold = float(cfg["gate_threshold"])
    confidence = float(cfg["confidence"])
    out = {"reviewed": reviewed, "unreviewed": unreviewed, "unqualified": bad, "threshold": threshold,
           "confidence": confidence, "gate_on": cfg["gate_on"],
           "reviews_needed_at_zero_failures": reviews_needed(threshold, confidence),
           "unqualified_by": {k: dict(v.most_common()) for k, v in by.items()},
           "unqualified_ids": unqualified_ids}
    if reviewed == 0:
        out.update(rate=None, lower=None, upper=None, passed=False,
                   message="no reviewed rows: fill the `verdict` column of the review sheet first")
        return out
    rate = bad / reviewed
    lower, upper = clopper_pearson(bad, reviewed, confidence)
    if cfg["gate_on"] not in ("upper", "point"):
        raise ValueError(f"evaluate.gate_on must be `upper` or `point`, not {cfg['gate_on']!r}")
    gated = upper if cfg["gate_on"] == "upper" else rate
    passed = gated < threshold
    what = f"{int(confidence * 100)}% upper bound" if cfg["gate_on"] == "upper" else "unqualified rate"
    msg = (f"{'PASS' if passed else 'FAIL'}: {bad}/{reviewed} unqualified = {rate:.4%} "
           f"(CP {confidence:.0%} [{lower:.4%}, {upper:.4%}]); gated {what} {gated:.4%} "
           f"{'<' if passed else '>='} {threshold:.4%}")
    if not passed and cfg["gate_on"] == "upper" and bad == 0:
        msg += f"; with zero failures at least {out['reviews_needed_at_zero_failures']} reviews are needed"
    out.update(rate=rate, lower=lower, upper=upper, gated_value=gated, passed=passed, message=msg)
    return out


def split_flags(value) -> list[str]:
    """rule_flags as written in the sheet (comma-joined string) or as a list."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [f.strip() for f in str(value).split(",") if f.strip()]
