"""BENCHMARKS.md: tables and plot links generated from the tidy results (never edited by hand)."""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .metrics import KEYS, PER_CLASS, median_worst, summarise
from .plots import plot_slug

PEER = "st_breaking_ties"
PAGE = "report.html"  # the self-contained HTML page beside rounds.csv (:mod:`thrifty.bench.html`)
# section anchors and titles, shared by BENCHMARKS.md and the HTML page
SECTIONS = {
    "overall": "Overall",
    "headline": "Headline: labels to reach 98% of the full-pool student, as a ratio to random",
    "match-random": "Labels to match random's accuracy at the full budget, as a ratio to random",
    "per-dataset": "Per dataset",
    "mraru": "M-RARU exponent (accept if r < u^exponent)",
    "scale": "Scale: seconds per selection round against pool size",
}


def is_peer(strategy: str) -> bool:
    return strategy.startswith("st_")


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _ratio_str(r: pd.Series, tag: str) -> str:
    v = _num(r[f"ratio_{tag}"])
    if v is None:
        return "n/a" if _num(r[f"labels_to_{tag}"]) is None else "?"
    return f"{'<=' if bool(r[f'ratio_{tag}_is_bound']) else ''}{v:.2f}"


def _labels_str(r: pd.Series, tag: str) -> str:
    v = _num(r[f"labels_to_{tag}"])
    return f">{int(r['budget'])}" if v is None else f"{int(v)}"


def _fmt(x: Any, nd: int = 3) -> str:
    v = _num(x)
    return "" if v is None else f"{v:.{nd}f}"


Table = tuple[list[str], list[list[str]]]  # header, rows of cell strings: rendered as Markdown and as HTML


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def is_thrifty(strategy: str) -> bool:
    """A strategy of thrifty's own (not the random baseline, not the small-text peer)."""
    return strategy != "random" and not strategy.startswith("st_")


def _best(g: pd.DataFrame) -> pd.Series | None:
    """Fewest labels to 98% (then highest AULC) among thrifty's own strategies."""
    own = g[g["strategy"].map(is_thrifty)].copy()
    if own.empty:
        return None
    own["_l"] = own["labels_to_98"].map(lambda v: math.inf if _num(v) is None else v)
    return own.sort_values(["_l", "aulc"], ascending=[True, False]).iloc[0]


def headline(summary: pd.DataFrame) -> tuple[list[str], dict[str, Any]]:
    """The labels-to-98% ratio to random of every strategy, per dataset and teacher, and the
    best thrifty strategy against small-text's BreakingTies."""
    strategies = sorted(summary["strategy"].unique(), key=lambda s: (s != "random", s.startswith("st_"), s))
    rows, reductions, per_strategy = [], [], {s: [] for s in strategies}
    for (ds, teacher, student), g in summary.groupby(["dataset", "teacher", "student"], sort=True):
        by = g.set_index("strategy")
        cells = [ds, teacher, student, f"{_fmt(g['full_pool_accuracy'].iloc[0])}"]
        for s in strategies:
            cells.append(_ratio_str(by.loc[s], "98") if s in by.index else "")
            if s in by.index and "random" in by.index and _num(by.loc["random", "labels_to_98"]) is not None:
                per_strategy[s].append(_num(by.loc[s, "ratio_98"]))  # None (never reached) counts as worst
        best = _best(g)
        verdict = ""
        if best is not None:
            cells.append(f"{best['strategy']} ({_labels_str(best, '98')})")
            if "random" in by.index and _num(by.loc["random", "labels_to_98"]) is not None:
                r98 = _num(best["ratio_98"])
                reductions.append(-math.inf if r98 is None else 1 - r98)
            if PEER in by.index:
                bl, pl = _num(best["labels_to_98"]), _num(by.loc[PEER, "labels_to_98"])
                if bl is not None and (pl is None or bl < pl):
                    verdict = f"thrifty wins ({int(bl)} vs {'>' + str(int(best['budget'])) if pl is None else int(pl)})"
                elif pl is not None and (bl is None or pl < bl):
                    verdict = f"small-text wins ({'>' + str(int(best['budget'])) if bl is None else int(bl)} vs {int(pl)})"
                elif bl is None and pl is None:
                    verdict = "neither reaches 98%"
                else:
                    a_own, a_peer = float(best["aulc"]), float(by.loc[PEER, "aulc"])
                    verdict = f"tie at {int(bl)} (AULC {a_own:.3f} vs {a_peer:.3f})"
        else:
            cells.append("")
        cells.append(verdict)
        rows.append(cells)
    header = ["dataset", "teacher", "student", "full-pool acc"] + strategies + ["best thrifty (labels)", "vs small-text BreakingTies"]
    match_rows, per_match = [], {s: [] for s in strategies}
    for (ds, teacher, student), g in summary.groupby(["dataset", "teacher", "student"], sort=True):
        by = g.set_index("strategy")
        cells = [ds, teacher, student, _fmt(by.loc["random", "final_accuracy"]) if "random" in by.index else ""]
        for s in strategies:
            v = _num(by.loc[s, "ratio_match_random"]) if s in by.index else None
            cells.append("" if s not in by.index else ("never" if v is None else f"{v:.2f}"))
            if s in by.index and "random" in by.index:
                per_match[s].append(v)  # never = worst
        match_rows.append(cells)
    match: Table = (["dataset", "teacher", "student", "random's final acc"] + strategies, match_rows)
    stats = {
        "table": (header, rows),
        "match": match,
        "match_table": _md_table(*match),
        "median_match": {s: (median_worst(v), sum(x is not None for x in v), len(v)) for s, v in per_match.items()},
        "median_reduction_best": float(np.median(reductions)) if reductions else None,
        "n_reduction": len(reductions),
        "median_ratio": {s: (median_worst(v), sum(x is not None for x in v), len(v)) for s, v in per_strategy.items()},
    }
    return _md_table(header, rows), stats


def _median_str(v: float | None) -> str:
    return "" if v is None else ("never" if math.isinf(v) else f"{v:.2f}")


def _pct(v: float) -> str:
    return "never reached" if math.isinf(v) else f"{v * 100:.0f}%"


def reduction_note(stats: dict[str, Any]) -> str:
    """The headline sentence (Markdown) on the best thrifty strategy's median reduction against random."""
    return (f"Median reduction vs random of the best thrifty strategy per dataset (chosen after the fact, so optimistic; "
            f"never reached = worst): **{_pct(stats['median_reduction_best'])}** over {stats['n_reduction']} "
            "dataset/teacher pairs where random reaches 98%.")


def _noise(a: pd.Series, b: pd.Series) -> float:
    """Two standard errors of the difference of two seed-averaged AULCs."""
    var = sum((_num(r.get("aulc_std")) or 0.0) ** 2 / max(1, int(r["seeds"])) for r in (a, b))
    return 2.0 * math.sqrt(var)


def overall(summary: pd.DataFrame) -> list[str]:
    """The Markdown lines of :func:`overall_table`."""
    return _md_table(*overall_table(summary))


def overall_table(summary: pd.DataFrame) -> Table:
    """Per student and strategy, over dataset/teacher pairs: worst-counted medians of the label ratios,
    the AULC against random and against small-text's best strategy (within seed noise), selection cost."""
    rows = []
    order = lambda s: (s != "random", is_peer(s), s)  # noqa: E731
    for student, gs in summary.groupby("student", sort=True):
        acc: dict[str, dict[str, list]] = {}
        for _, g in gs.groupby(["dataset", "teacher"], sort=True):
            by = g.set_index("strategy")
            rnd = by.loc["random"] if "random" in by.index else None
            peers = [by.loc[p] for p in by.index if is_peer(p)]
            best_peer = max(peers, key=lambda r: r["aulc"]) if peers else None
            for s, r in by.iterrows():
                a = acc.setdefault(s, {k: [] for k in ("match", "r98", "r95", "reach98", "daulc", "ge_rnd", "ge_peer", "sel")})
                a["reach98"].append(_num(r["labels_to_98"]) is not None)
                a["sel"].append(_num(r["select_s_per_round"]))
                if rnd is not None:
                    a["match"].append(_num(r["ratio_match_random"]))
                    for tag in ("98", "95"):
                        if _num(rnd[f"labels_to_{tag}"]) is not None:
                            a[f"r{tag}"].append(_num(r[f"ratio_{tag}"]))
                    a["daulc"].append(float(r["aulc"]) - float(rnd["aulc"]))
                    a["ge_rnd"].append(float(r["aulc"]) >= float(rnd["aulc"]) - _noise(r, rnd))
                if best_peer is not None:
                    a["ge_peer"].append(float(r["aulc"]) >= float(best_peer["aulc"]) - _noise(r, best_peer))
        for s in sorted(acc, key=order):
            a = acc[s]
            sel = [x for x in a["sel"] if x is not None]
            rows.append([
                student, s, _median_str(median_worst(a["match"])) if a["match"] else "",
                (_median_str(median_worst(a["r98"])) + f" ({len(a['r98'])})") if a["r98"] else "",
                (_median_str(median_worst(a["r95"])) + f" ({len(a['r95'])})") if a["r95"] else "",
                f"{sum(a['reach98'])}/{len(a['reach98'])}",
                f"{np.median(a['daulc']):+.3f}" if a["daulc"] else "",
                f"{sum(a['ge_rnd'])}/{len(a['ge_rnd'])}" if a["ge_rnd"] else "",
                f"{sum(a['ge_peer'])}/{len(a['ge_peer'])}" if a["ge_peer"] else "",
                f"{np.mean(sel):.3f}" if sel else "",
            ])
    return (["student", "strategy", "match-random", "98% ratio (pairs)", "95% ratio (pairs)", "reached 98%",
             "AULC - random", "AULC >= random", ">= best peer", "select s/round"], rows)


def median_table(medians: dict[str, tuple[float | None, int, int]]) -> Table:
    """Per strategy: the worst-counted median ratio, the pairs that reached the mark and all pairs."""
    return (["strategy", "median ratio to random", "pairs reached", "pairs"],
            [[s, _median_str(v), str(k), str(n)] for s, (v, k, n) in medians.items()])


def dataset_table(g: pd.DataFrame) -> Table:
    """One dataset/teacher/student's strategies, best AULC first."""
    rows = []
    pcs = [pc for pc in PER_CLASS if f"acc_at_{pc}_per_class" in g and g[f"acc_at_{pc}_per_class"].notna().any()]
    for _, r in g.sort_values("aulc", ascending=False).iterrows():
        rows.append([
            r["strategy"], _labels_str(r, "95"), _ratio_str(r, "95"), _labels_str(r, "98"), _ratio_str(r, "98"),
            "never" if _num(r["ratio_match_random"]) is None else _fmt(r["ratio_match_random"], 2),
            f"{_fmt(r['aulc'])} ± {_fmt(r.get('aulc_std'))}",
            *(_fmt(r[f"acc_at_{pc}_per_class"]) for pc in pcs),
            f"{_fmt(r['final_accuracy'])} ± {_fmt(r.get('final_accuracy_std'))}", _fmt(r["select_s_per_round"], 4),
            "" if _num(r["dollars_at_98"]) is None else f"${r['dollars_at_98']:.4f}",
        ])
    return (["strategy", "labels to 95%", "ratio", "labels to 98%", "ratio", "match-random ratio", "AULC ± sd",
             *(f"acc at {pc}/class" for pc in pcs), f"acc at {int(g['budget'].max())} ± sd",
             "select s/round", "$ at 98%"], rows)


def dataset_note(g: pd.DataFrame) -> str:
    """The line under a dataset's heading: its ceiling, seeds and budget."""
    return (f"Full-pool accuracy {_fmt(g['full_pool_accuracy'].iloc[0])}; seeds {int(g['seeds'].max())}; "
            f"budget {int(g['budget'].max())} labels.")


def mraru_table(summary: pd.DataFrame) -> Table | None:
    """M-RARU's exponents side by side (None unless more than one ran)."""
    mr = summary[summary["strategy"].str.startswith("mraru")]
    if mr["strategy"].nunique() <= 1:
        return None
    exps = sorted(mr["strategy"].unique())
    rows = []
    for (ds, teacher, student), g in mr.groupby(["dataset", "teacher", "student"], sort=True):
        by = g.set_index("strategy")
        rows.append([ds, teacher] + [
            f"{_ratio_str(by.loc[e], '98')} / {_fmt(by.loc[e, 'aulc'])}" if e in by.index else "" for e in exps
        ])
    return ["dataset", "teacher"] + [f"{e}: ratio98 / AULC" for e in exps], rows


def scale_table(scale: pd.DataFrame) -> Table:
    """Seconds per selection round against pool size, per strategy."""
    return (["pool size", "strategy", "s / round", "rows scored", "x faster than entropy"],
            [[f"{int(r.pool_size):,}", r.strategy, f"{r.select_s:.4f}", f"{int(r.scored):,}", _fmt(r.x_faster_than_entropy, 1)]
             for r in scale.sort_values(["pool_size", "strategy"]).itertuples()])


def plots_for(plots: list[Path] | None, ds: str, teacher: str, student: str) -> list[Path]:
    """The learning-curve PNGs of one dataset/teacher/student (named by :func:`~.plots.plot_curves`)."""
    return [p for p in plots or [] if p.name.startswith(plot_slug(ds, teacher, student))]


def write_report(
    rounds: pd.DataFrame,
    out_md: str | Path,
    results_dir: str | Path,
    spec: dict[str, Any],
    command: str,
    scale: pd.DataFrame | None = None,
    plots: list[Path] | None = None,
    grid_seconds: float | None = None,
) -> pd.DataFrame:
    """Write BENCHMARKS.md, ``summary.csv`` and the HTML page ``report.html`` beside it; returns the summary table."""
    out_md = Path(out_md)
    results = Path(results_dir)
    summary = summarise(rounds)
    summary.to_csv(results / "summary.csv", index=False)
    rel = lambda p: Path(os.path.relpath(Path(p).resolve(), out_md.parent.resolve())).as_posix()  # noqa: E731
    generated = (f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
                 f"({platform.machine()}, {platform.python_version()}).")
    L: list[str] = [
        "# thrifty benchmarks",
        "",
        f"{generated} Do not edit by hand: re-run the command.",
        "",
        "## What ran",
        "",
        "```",
        *(f"{k}: {v}" for k, v in spec.items()),
        "```",
        "",
        f"{rounds.groupby(KEYS + ['seed']).ngroups} runs, {len(rounds)} rounds"
        + (f", {grid_seconds / 60:.1f} min of grid time" if grid_seconds else "")
        + f". Tidy results: [`{rel(results / 'rounds.csv')}`]({rel(results / 'rounds.csv')}) (one row per round), "
        f"[`{rel(results / 'summary.csv')}`]({rel(results / 'summary.csv')}) (one row per configuration).",
        "",
        f"Every table and plot on one self-contained page (opens offline, nothing fetched): "
        f"[`{rel(results / PAGE)}`]({rel(results / PAGE)}).",
        "",
        "## How to read it",
        "",
        "- **x-axis**: teacher labels paid (seed set + selected batches; no validation slice: accuracy is measured on the "
        "dataset's gold `test.csv`, which is never trained or selected on).",
        "- **full-pool accuracy**: the same student and features trained on *every* pool text with the same teacher's labels.",
        "- **labels to 98%**: first label count at which the seed-averaged learning curve, smoothed by isotonic "
        "(monotone) regression, reaches 98% of the full-pool accuracy. Isotonic regression is the least-squares "
        "non-decreasing fit: it removes round-to-round noise of small test sets without the upward bias of a running max.",
        "- **ratio** = labels to 98% / random's labels to 98% (lower is better; 0.20 = an 80% reduction). "
        "`<=x`: random never reached 98% within the budget, so the true ratio is at most x. "
        "`n/a`: the strategy did not reach 98% within the budget.",
        "- **AULC**: area under the (mean) learning curve divided by its label range = mean test accuracy over the budget.",
        "- **agreement**: student vs teacher labels on the pool rows not yet labelled (for simulated and recorded "
        "teachers these are known for free; they are used only to measure).",
        "- Strategies starting `st_` are small-text's own query strategies run through small-text "
        "(`thrifty.bench.peers`), on the same features, student, seeds and batches.",
        "- **medians over datasets count \"never reached\" as the worst value** (shown as `never` when it is the "
        "median): a strategy that misses a mark is never dropped from a median.",
        "",
        f"## {SECTIONS['overall']}",
        "",
        "One row per student and strategy, over every dataset/teacher pair. *match-random*: median labels to reach "
        "random's final accuracy / random's (never = worst). *98% / 95%*: median labels to reach 98% / 95% of the "
        "full-pool student / random's, over the pairs where random reaches it (never = worst). *AULC - random*: median "
        "difference of mean accuracy over the budget; *AULC >= random*: pairs where the strategy's AULC is at least "
        "random's minus twice the standard error of the difference (seeds); *>= best peer*: pairs where its AULC is at "
        "least the best small-text strategy's minus the same noise.",
        "",
    ]
    L += overall(summary)
    L += [
        "",
        f"## {SECTIONS['headline']}",
        "",
    ]
    table, stats = headline(summary)
    L += table
    L += [""]
    if stats["median_reduction_best"] is not None:
        L.append(reduction_note(stats))
    L += ["", "Median ratio per strategy over the pairs where random reaches 98% (never reached = worst):", ""]
    L += _md_table(*median_table(stats["median_ratio"]))
    L += [
        "",
        f"## {SECTIONS['match-random']}",
        "",
        "First label count where a strategy's smoothed curve reaches random's final smoothed accuracy, divided by the "
        "count where random first reaches it (lower is better; `never` = not within the budget). Unlike the 98% "
        "target this is never censored for random, so it gives a ratio on every dataset.",
        "",
    ]
    L += stats["match_table"]
    L += ["", "Median over dataset/teacher pairs (never = worst):", ""]
    L += _md_table(*median_table(stats["median_match"]))
    L += ["", f"## {SECTIONS['per-dataset']}", ""]
    for (ds, teacher, student), g in summary.groupby(["dataset", "teacher", "student"], sort=True):
        L += [f"### {ds} - teacher `{teacher}` - student `{student}`", ""]
        L += [dataset_note(g), ""]
        L += _md_table(*dataset_table(g))
        L.append("")
        for p in plots_for(plots, ds, teacher, student):
            L += [f"![{ds} {teacher} {student}]({rel(p)})", ""]
    mr = mraru_table(summary)
    if mr is not None:
        L += [f"## {SECTIONS['mraru']}", ""]
        L += _md_table(*mr)
        L += ["", "`mraru` without brackets is the default exponent (2).", ""]
    if scale is not None and len(scale):
        L += [f"## {SECTIONS['scale']}", ""]
        L.append(
            f"Synthetic pools resampled from `{scale['dataset'].iloc[0]}` (word TF-IDF, LR student on 500 labels), "
            f"batch {int(scale['batch'].iloc[0])}, best of {int(scale['repeats'].iloc[0])} rounds, measured side by side in one process."
        )
        L.append("")
        L += _md_table(*scale_table(scale))
        png = results / "scale.png"
        if png.exists():
            L += ["", f"![scale]({rel(png)})"]
        L.append("")
    out_md.write_text("\n".join(L) + "\n", encoding="utf-8")
    from .html import write_page

    write_page(rounds, summary, results, plots=plots, scale=scale, md=out_md, generated=generated)
    return summary
