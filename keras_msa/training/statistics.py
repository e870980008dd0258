"""Statistics over training runs with different seeds: mean, standard
deviation and a Student-t confidence interval per metric.

Papers usually report one seed; `recipes/train.py --seeds=1111,1112,...` runs
them all and writes what `summarize_runs` returns (JSON) and
`markdown_table` renders (Markdown).

The t quantile is computed here (no SciPy): for an integer number of degrees
of freedom ``nu`` the two-sided probability ``P(|T| <= t)`` has a closed form
in ``theta = atan(t / sqrt(nu))`` (Abramowitz & Stegun 26.7.3-26.7.4), a
finite sum of powers of ``cos(theta)``; it increases with ``t``, so the
quantile follows by bisection to machine precision.
"""

import math

import numpy as np


def t_two_sided_probability(t, df):
    """`P(|T| <= t)` for Student's t with `df` (a positive integer) degrees
    of freedom."""
    df = int(df)
    if df < 1:
        raise ValueError(f"df must be a positive integer; got {df}.")
    t = abs(float(t))
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    s = math.sin(theta)
    if df % 2 == 1:
        # Odd df: (2/pi) [theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...)]
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= (2 * k) / (2 * k + 1) * c2
        if df == 1:
            return 2.0 * theta / math.pi
        return 2.0 / math.pi * (theta + s * math.cos(theta) * total)
    # Even df: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...), df/2 terms.
    total, term = 0.0, 1.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= (2 * k - 1) / (2 * k) * c2
    return s * total


def t_quantile(confidence, df):
    """The `t` with `P(|T| <= t) = confidence` (e.g. 0.95 -> 2.776 for df=4)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}.")
    lo, hi = 0.0, 1.0
    while t_two_sided_probability(hi, df) < confidence:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided_probability(mid, df) < confidence:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def summarize(values, confidence=0.95):
    """Mean, sample standard deviation (ddof=1) and the t confidence interval
    of the mean of `values` (NaNs are dropped). With fewer than two values the
    spread is unknown and reported as `None`."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    out = {"n": n, "mean": None, "std": None, "ci_low": None, "ci_high": None,
           "half_width": None, "confidence": confidence}
    if n == 0:
        return out
    mean = float(x.mean())
    out["mean"] = mean
    out["min"] = float(x.min())
    out["max"] = float(x.max())
    if n < 2:
        return out
    std = float(x.std(ddof=1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    out.update(std=std, half_width=half, ci_low=mean - half, ci_high=mean + half)
    return out


def summarize_runs(runs, splits=("valid", "test"), confidence=0.95):
    """Per-split, per-metric statistics over runs.

    Args:
        runs: list of `metrics.json` dicts (one per seed) as written by
            `keras_msa.training.runner.train`.
        splits: which result splits to summarise.
        confidence: level of the interval.

    Returns:
        `{"seeds": [...], "n_runs": n, "<split>": {metric: summarize(...)}}`.
    """
    out = {"seeds": [r.get("seed") for r in runs], "n_runs": len(runs), "confidence": confidence}
    for split in splits:
        names = []
        for r in runs:
            for k in r.get(split, {}):
                if k not in names:
                    names.append(k)
        if not names:
            continue
        out[split] = {
            k: dict(summarize([r.get(split, {}).get(k) for r in runs], confidence),
                    values=[r.get(split, {}).get(k) for r in runs])
            for k in names
        }
    return out


def _fmt(v, digits):
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown_table(summary, split="test", title=None, digits=4):
    """A Markdown table of `summarize_runs(...)[split]`: one row per metric
    with mean, std, the confidence interval and the per-seed values."""
    if split not in summary:
        raise KeyError(f"The summary has no split '{split}'; it holds {sorted(summary)}.")
    level = int(round(100 * summary.get("confidence", 0.95)))
    lines = []
    if title:
        lines += [f"### {title}", ""]
    seeds = ", ".join(str(s) for s in summary.get("seeds", []))
    lines.append(f"{split} split, {summary['n_runs']} seeds ({seeds}); CI: Student t, {level}%.")
    lines.append("")
    lines.append(f"| metric | mean | std | {level}% CI | per seed |")
    lines.append("|---|---|---|---|---|")
    for name, s in summary[split].items():
        ci = "n/a" if s["ci_low"] is None else f"[{_fmt(s['ci_low'], digits)}, {_fmt(s['ci_high'], digits)}]"
        per_seed = ", ".join(_fmt(v, digits) for v in s["values"])
        lines.append(f"| {name} | {_fmt(s['mean'], digits)} | {_fmt(s['std'], digits)} | {ci} | {per_seed} |")
    return "\n".join(lines) + "\n"
