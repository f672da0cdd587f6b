"""``OUT/report.html`` of ``thrifty bench``: every table of BENCHMARKS.md and every learning curve on one
self-contained page (the inline CSS and base64 figures of :mod:`thrifty.report.html`; no script, nothing
fetched, so it opens offline).

The tables are the same ``(header, rows)`` cell strings :mod:`thrifty.bench.report` writes as Markdown,
so the page and BENCHMARKS.md never disagree. Benchmark runs keep their ledger in memory (no run
directory), so a configuration's detail is its rounds from ``rounds.csv``, per seed, on the page.
"""

from __future__ import annotations

import html
import math
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ThriftyError
from ..report.html import figure_html, page_html
from .metrics import KEYS, summarise
from .plots import plot_slug
from .report import (
    PAGE, SECTIONS, Table, dataset_note, dataset_table, headline, median_table, mraru_table, overall_table,
    plots_for, reduction_note, scale_table,
)

RUN_COLUMNS = ("seed", "round", "labels_total", "test_accuracy", "pool_agreement", "dollars", "select_s")
CURVE_CAPTION = ("Test accuracy on gold and agreement with the teacher against teacher labels, and accuracy against "
                 "dollars; dashed: random, dash-dot: small-text's strategies; black: the full-pool student, grey: 98% of it.")


def _e(x: Any) -> str:
    return html.escape(str(x))


def _inline(md: str) -> str:
    """Escape a line of the Markdown report and keep its **bold** and `code`."""
    text = _e(md)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _run_id(ds: str, teacher: str, student: str, strategy: str) -> str:
    return "run-" + plot_slug(ds, teacher, student, strategy)


def _table(t: Table, tid: str, links: list[str | None] | None = None) -> str:
    """An HTML table of cell strings; ``links[i]`` makes row i's first cell a link."""
    header, rows = t
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = [f"<td>{_e(c)}</td>" for c in row]
        if links and links[i] and cells:
            cells[0] = f'<td><a href="#{links[i]}">{_e(row[0])}</a></td>'
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table id="{tid}"><tr>{head}</tr>{"".join(body)}</table></div>'


def _cell(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if col in ("seed", "round", "labels_total"):
        return str(int(v))
    return f"{float(v):.6f}" if col == "dollars" else f"{float(v):.4f}"


def _runs(rounds: pd.DataFrame, ds: str, teacher: str, student: str) -> str:
    """One collapsible table per configuration: its rounds, seed by seed (the per-run detail)."""
    out = []
    sel = rounds[(rounds["dataset"] == ds) & (rounds["teacher"] == teacher) & (rounds["student"] == student)]
    cols = [c for c in RUN_COLUMNS if c in sel.columns]
    for strategy, g in sel.groupby("strategy", sort=True):
        g = g.sort_values(["seed", "labels_total"])
        rows = [[_cell(c, v) for c, v in zip(cols, r)] for r in g[cols].itertuples(index=False)]
        rid = _run_id(ds, teacher, student, strategy)
        # the anchor is inside the closed <details>: following a link to it opens it (checked in Chromium)
        out.append(f'<details><summary>{_e(strategy)}: {g["seed"].nunique()} seed(s), {len(g)} rounds</summary>'
                   f'<div id="{rid}">' + _table((cols, rows), f"{rid}-rounds") + "</div></details>")
    return "".join(out)


def render_page(rounds: pd.DataFrame, summary: pd.DataFrame, results_dir: str | Path, plots: list[Path] | None = None,
                scale: pd.DataFrame | None = None, md: str | Path | None = None, generated: str = "") -> str:
    """The page's HTML: a table of contents, the tables of BENCHMARKS.md, a section per dataset/teacher/student
    with its learning curves inlined and, per configuration, a link to its rounds."""
    results = Path(results_dir)
    rel = lambda p: Path(os.path.relpath(Path(p).resolve(), results.resolve())).as_posix()  # noqa: E731
    groups = list(summary.groupby(["dataset", "teacher", "student"], sort=True))
    mr = mraru_table(summary)
    has_scale = scale is not None and len(scale) > 0
    shown = [k for k in SECTIONS if (k != "mraru" or mr is not None) and (k != "scale" or has_scale)]
    toc = []
    for k in shown:
        sub = ""
        if k == "per-dataset":
            sub = "<ul>" + "".join(f'<li><a href="#ds-{plot_slug(*key)}">{_e(key[0])} - teacher {_e(key[1])} - '
                                   f"student {_e(key[2])}</a></li>" for key, _ in groups) + "</ul>"
        toc.append(f'<li><a href="#{k}">{_e(SECTIONS[k])}</a>{sub}</li>')
    links = [f'<a href="{_e(rel(results / f))}">{f}</a>' for f in ("rounds.csv", "summary.csv") if (results / f).exists()]
    if md is not None:
        links.append(f'<a href="{_e(rel(md))}">{_e(Path(md).name)}</a> (how to read every column)')
    body = ["<h1>thrifty benchmarks</h1>",
            f'<p class="note">{_inline(generated)} {rounds.groupby(KEYS + ["seed"]).ngroups} runs, {len(rounds)} rounds. '
            + ("Tidy results and notes: " + ", ".join(links) + "." if links else "") + "</p>",
            f'<nav id="toc"><ul>{"".join(toc)}</ul></nav>']
    _, stats = headline(summary)
    body += [f'<h2 id="overall">{_e(SECTIONS["overall"])}</h2>', _table(overall_table(summary), "overall-table"),
             f'<h2 id="headline">{_e(SECTIONS["headline"])}</h2>', _table(stats["table"], "headline-table")]
    if stats["median_reduction_best"] is not None:
        body.append(f"<p>{_inline(reduction_note(stats))}</p>")
    body += ["<p>Median ratio per strategy over the pairs where random reaches 98% (never reached = worst):</p>",
             _table(median_table(stats["median_ratio"]), "median-ratio-table"),
             f'<h2 id="match-random">{_e(SECTIONS["match-random"])}</h2>', _table(stats["match"], "match-table"),
             "<p>Median over dataset/teacher pairs (never = worst):</p>",
             _table(median_table(stats["median_match"]), "median-match-table"),
             f'<h2 id="per-dataset">{_e(SECTIONS["per-dataset"])}</h2>']
    for (ds, teacher, student), g in groups:
        sid = plot_slug(ds, teacher, student)
        t = dataset_table(g)
        body += [f'<section id="ds-{sid}" data-dataset="{_e(ds)}"><h3>{_e(ds)} - teacher <code>{_e(teacher)}</code> - '
                 f"student <code>{_e(student)}</code></h3>", f"<p>{_e(dataset_note(g))}</p>",
                 _table(t, f"table-{sid}", links=[_run_id(ds, teacher, student, r[0]) for r in t[1]])]
        body += [figure_html(p.stem, p.read_bytes(), f"{ds} {teacher} {student}", CURVE_CAPTION)
                 for p in plots_for(plots, ds, teacher, student)]
        body += ["<p>Rounds of each configuration (every seed):</p>", _runs(rounds, ds, teacher, student), "</section>"]
    if mr is not None:
        body += [f'<h2 id="mraru">{_e(SECTIONS["mraru"])}</h2>', _table(mr, "mraru-table"),
                 "<p><code>mraru</code> without brackets is the default exponent (2).</p>"]
    if has_scale:
        body += [f'<h2 id="scale">{_e(SECTIONS["scale"])}</h2>', _table(scale_table(scale), "scale-table")]
        if (results / "scale.png").exists():
            body.append(figure_html("scale", (results / "scale.png").read_bytes(), "scale",
                                    "Seconds per selection round against pool size (log-log)."))
    return page_html("thrifty benchmarks", body)


def write_page(rounds: pd.DataFrame, summary: pd.DataFrame, results_dir: str | Path, **kw: Any) -> Path:
    """Write :func:`render_page` to ``RESULTS/report.html``; returns its path."""
    path = Path(results_dir) / PAGE
    path.write_text(render_page(rounds, summary, results_dir, **kw), encoding="utf-8")
    return path


def write_html_report(results_dir: str | Path = "benchmarks/results", md: str | Path | None = None) -> Path:
    """Rebuild ``RESULTS/report.html`` from the files of a finished ``thrifty bench`` (``rounds.csv``, the
    PNGs under ``plots/``, ``scale.csv``/``scale.png``); ``md`` is the Markdown report to link to."""
    results = Path(results_dir)
    if not (results / "rounds.csv").is_file():
        raise ThriftyError(f"{results / 'rounds.csv'} not found: run `thrifty bench --out {results}` first.")
    rounds = pd.read_csv(results / "rounds.csv")
    scale = pd.read_csv(results / "scale.csv") if (results / "scale.csv").is_file() else None
    return write_page(rounds, summarise(rounds), results, plots=sorted((results / "plots").glob("*.png")), scale=scale,
                      md=md, generated="Rebuilt from `rounds.csv` by `thrifty.bench.html.write_html_report`.")
