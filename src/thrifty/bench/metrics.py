"""Benchmark metrics over learning curves (pure functions on tidy tables).

- The curve of a configuration is the mean over seeds of test accuracy (on gold) at each
  number of teacher labels paid.
- "Labels to reach X%" reads that curve after **isotonic (monotone non-decreasing)
  regression**: the least-squares monotone fit, which removes the +-2-point round-to-round
  noise of small test sets without the upward bias of a running maximum. It is the first
  label count where the smoothed curve reaches X% of the full-pool student's accuracy
  (the same student and features trained on every pool text with the same teacher's labels).
- The ratio to random divides that count by random's. When random never reaches the
  target within the budget, the ratio is an upper bound ("<="); when the strategy does not
  reach it either, there is no ratio.
- AULC is the mean accuracy over the label range (trapezoidal area / range).
- "Labels to match random" is the first label count where a strategy's smoothed curve
  reaches random's final smoothed accuracy, divided by the count where random itself first
  reaches it: an uncensored label ratio even when nobody reaches 98% of the full pool.
- Medians over datasets count a strategy that never reaches a mark as the worst value
  (``inf``), never leave it out: :func:`median_worst`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

KEYS = ["dataset", "teacher", "student", "strategy"]


PER_CLASS = (10, 20, 40)  # budget checkpoints in labels per class


def median_worst(values: list[float | None]) -> float | None:
    """Median where ``None`` (never reached) counts as the worst value, ``inf``; None if no values."""
    if not values:
        return None
    return float(np.median([math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]))


def smooth(labels: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Monotone (isotonic) fit of accuracy against labels."""
    if len(acc) < 2:
        return np.asarray(acc, dtype=float)
    return IsotonicRegression(increasing=True).fit_transform(np.asarray(labels, float), np.asarray(acc, float))


def labels_to_reach(labels: np.ndarray, smoothed: np.ndarray, target: float) -> float | None:
    """First label count whose smoothed accuracy is >= target (None if never)."""
    hit = np.flatnonzero(np.asarray(smoothed) >= target - 1e-12)
    return float(labels[hit[0]]) if len(hit) else None


def aulc(labels: np.ndarray, acc: np.ndarray) -> float:
    """Area under the learning curve divided by its label range (= mean accuracy)."""
    if len(labels) < 2:
        return float(acc[0]) if len(acc) else math.nan
    return float(np.trapezoid(acc, labels) / (labels[-1] - labels[0]))


@dataclass
class Ratio:
    """A labels ratio to random that may be exact, an upper bound, or unknown."""

    value: float | None
    bound: bool = False  # True: the true ratio is <= value (random never reached the target)

    def __str__(self) -> str:
        if self.value is None:
            return "n/a"
        return f"{'<=' if self.bound else ''}{self.value:.2f}"


def ratio(strategy_labels: float | None, random_labels: float | None, budget: float) -> Ratio:
    if strategy_labels is None:
        return Ratio(None)
    if random_labels is None:
        return Ratio(strategy_labels / budget, bound=True)
    return Ratio(strategy_labels / random_labels)


def curves(rounds: pd.DataFrame) -> pd.DataFrame:
    """Mean (and std) over seeds per configuration and label count."""
    g = rounds.groupby(KEYS + ["labels_total"], sort=True)
    out = g.agg(
        acc=("test_accuracy", "mean"), acc_std=("test_accuracy", "std"), agreement=("pool_agreement", "mean"),
        dollars=("dollars", "mean"), select_s=("select_s", "mean"), seeds=("seed", "nunique"),
        full_acc=("full_pool_accuracy", "first"),
    ).reset_index()
    return out


def summarise(rounds: pd.DataFrame, fractions: tuple[float, ...] = (0.95, 0.98)) -> pd.DataFrame:
    """One row per configuration: labels to reach each fraction, ratio to random, AULC, cost."""
    cv = curves(rounds)
    sel_s = rounds[rounds["round"] > 0].groupby(KEYS)["select_s"].mean()
    per_seed = {}
    for key, g in rounds.groupby(KEYS + ["seed"], sort=True):
        g = g.sort_values("labels_total")
        lab_s, acc_s = g["labels_total"].to_numpy(float), g["test_accuracy"].to_numpy(float)
        per_seed.setdefault(key[:-1], []).append((aulc(lab_s, acc_s), float(acc_s[-1])))
    n_classes = rounds.groupby(KEYS)["n_classes"].first() if "n_classes" in rounds.columns else None
    rows = []
    for key, c in cv.groupby(KEYS, sort=True):
        c = c.sort_values("labels_total")
        lab = c["labels_total"].to_numpy(float)
        acc = c["acc"].to_numpy(float)
        sm = smooth(lab, acc)
        full = float(c["full_acc"].iloc[0]) if c["full_acc"].notna().any() else math.nan
        row = dict(zip(KEYS, key))
        seeds_stats = np.asarray(per_seed[key], dtype=float)
        row.update(
            seeds=int(c["seeds"].max()), budget=float(lab[-1]), full_pool_accuracy=full,
            final_accuracy=float(acc[-1]), aulc=aulc(lab, acc),
            # spread over seeds (sample std; 0 with one seed)
            final_accuracy_std=float(seeds_stats[:, 1].std(ddof=1)) if len(seeds_stats) > 1 else 0.0,
            aulc_std=float(seeds_stats[:, 0].std(ddof=1)) if len(seeds_stats) > 1 else 0.0,
            select_s_per_round=float(sel_s.get(key, math.nan)),
        )
        k = int(n_classes.get(key, 0)) if n_classes is not None and not pd.isna(n_classes.get(key)) else 0
        row["n_classes"] = k or None
        for pc in PER_CLASS:  # mean accuracy at pc labels per class (linear between rounds), if inside the curve
            inside = k and lab[0] <= pc * k <= lab[-1]
            row[f"acc_at_{pc}_per_class"] = float(np.interp(pc * k, lab, acc)) if inside else None
        for f in fractions:
            tag = f"{round(f * 100)}"
            reach = labels_to_reach(lab, sm, f * full) if not math.isnan(full) else None
            row[f"labels_to_{tag}"] = reach
            row[f"dollars_at_{tag}"] = float(c.loc[c["labels_total"] == reach, "dollars"].iloc[0]) if reach is not None else None
        row["_curve"] = (lab, sm)
        rows.append(row)
    out = pd.DataFrame(rows)
    # labels to match random's final (smoothed) accuracy: never censored for random itself
    match, match_ratio = [], []
    for _, r in out.iterrows():
        rnd = out[(out[KEYS[:3]] == r[KEYS[:3]]).all(axis=1) & (out["strategy"] == "random")]
        if not len(rnd):
            match.append(None)
            match_ratio.append(None)
            continue
        r_lab, r_sm = rnd["_curve"].iloc[0]
        target = float(r_sm[-1])
        lr = labels_to_reach(r_lab, r_sm, target)
        ls = labels_to_reach(*r["_curve"], target)
        match.append(ls)
        match_ratio.append(ls / lr if ls is not None and lr else None)
    out["labels_to_match_random"] = match
    out["ratio_match_random"] = match_ratio
    out = out.drop(columns="_curve")
    for f in fractions:
        tag = f"{round(f * 100)}"
        vals, bounds = [], []
        for _, r in out.iterrows():
            rnd = out[(out[KEYS[:3]] == r[KEYS[:3]]).all(axis=1) & (out["strategy"] == "random")]
            rl = rnd[f"labels_to_{tag}"].iloc[0] if len(rnd) else None
            rl = None if rl is None or (isinstance(rl, float) and math.isnan(rl)) else rl
            sl = r[f"labels_to_{tag}"]
            sl = None if sl is None or (isinstance(sl, float) and math.isnan(sl)) else sl
            q = ratio(sl, rl, r["budget"]) if len(rnd) else Ratio(None)
            vals.append(q.value)
            bounds.append(q.bound)
        out[f"ratio_{tag}"] = vals
        out[f"ratio_{tag}_is_bound"] = bounds
    return out
