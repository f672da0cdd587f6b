"""``thrifty bench``'s HTML page: one self-contained file with the numbers of BENCHMARKS.md, every learning
curve inlined, a section per dataset and a link from each configuration to its rounds."""

from __future__ import annotations

import base64
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thrifty.bench.html import write_html_report
from thrifty.bench.plots import plot_curves
from thrifty.bench.report import write_report
from thrifty.errors import ThriftyError

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
VOID = {"img", "meta", "br", "hr", "link", "input", "source", "wbr", "col"}


class Page(HTMLParser):
    """Checks nesting as it parses and collects ids, links, images and every table's rows of cell texts."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: Counter[str] = Counter()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.sections: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed tags: {self.stack}"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if "id" in a:
            self.ids[a["id"]] += 1
        if "href" in a:
            self.hrefs.append(a["href"])
        if "src" in a:
            self.srcs.append(a["src"])
        if tag == "section":
            self.sections.append(a.get("data-dataset", ""))
        if tag == "table":
            self._table.append(a["id"])
            self.tables[a["id"]] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag in ("td", "th"):
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self.tables[self._table[-1]].append(self._row)
        elif tag == "table":
            self._table.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _md_rows(md: str) -> list[list[str]]:
    """Every row (header rows included) of every Markdown table."""
    rows = []
    for line in md.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip()[1:-1].split(" | ")])
    return rows


def _rounds() -> pd.DataFrame:
    """Two datasets (one with two teachers), random / margin / small-text's BreakingTies, two seeds."""
    rng = np.random.default_rng(0)
    rows = []
    for ds, teacher, full in (("alpha", "oracle", 0.80), ("alpha", "recorded", 0.70), ("beta", "oracle", 0.90)):
        for strategy, speed in (("random", 1.0), ("margin", 1.6), ("st_breaking_ties", 1.5)):
            for seed in range(2):
                for r, lab in enumerate((50, 100, 150, 200)):
                    acc = min(full, 0.4 + speed * lab / 500) + rng.normal(0, 0.01)
                    rows.append(dict(dataset=ds, teacher=teacher, student="tfidf-lr", strategy=strategy, seed=seed,
                                     round=r, labels_total=lab, test_accuracy=round(acc, 4), pool_agreement=round(acc + 0.02, 4),
                                     dollars=lab * 2e-5, select_s=0.001 * speed, full_pool_accuracy=full, n_classes=4))
    return pd.DataFrame(rows)


def _check_page(page: Page, out: Path) -> None:
    """Well-formed, unique ids, nothing fetched, every local link resolves."""
    assert all(n == 1 for n in page.ids.values()), [i for i, n in page.ids.items() if n > 1]
    for link in page.hrefs + page.srcs:
        assert not link.startswith(("http:", "https:", "//")), link
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
    for href in page.hrefs:
        if href.startswith("#"):
            assert href[1:] in page.ids, href
        else:
            assert (out / href).resolve().exists(), href


def test_bench_writes_a_self_contained_page_with_the_markdown_numbers(tmp_path):
    rounds = _rounds()
    out, md = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    plots = plot_curves(rounds, out / "plots")
    rounds.to_csv(out / "rounds.csv", index=False)
    summary = write_report(rounds, md, out, {"datasets": ["alpha", "beta"]}, "thrifty bench", plots=plots)

    text = md.read_text()
    assert "[`results/report.html`](results/report.html)" in text  # BENCHMARKS.md links the page, relatively
    html_text = (out / "report.html").read_text(encoding="utf-8")
    assert "http://" not in html_text and "https://" not in html_text and "<script" not in html_text
    page = Page(html_text)
    _check_page(page, out)

    # a section per dataset/teacher/student, listed in the table of contents
    groups = summary.groupby(["dataset", "teacher", "student"]).ngroups
    assert sorted(page.sections) == ["alpha", "alpha", "beta"] and groups == 3
    assert sum(h.startswith("#ds-") for h in page.hrefs) == groups
    # every learning curve inlined, byte for byte
    inlined = [base64.b64decode(s.split(",", 1)[1]) for s in page.srcs]
    assert len(plots) == 3 and sorted(inlined) == sorted(p.read_bytes() for p in plots)

    # the same numbers as BENCHMARKS.md: every Markdown table row is a row of the page's summary tables
    summary_rows = [r for tid, rows in page.tables.items() if not tid.startswith("run-") for r in rows]
    assert Counter(map(tuple, summary_rows)) == Counter(map(tuple, _md_rows(text)))
    # and they are the numbers of the rounds: random's AULC on beta, computed here by hand
    beta = rounds[(rounds.dataset == "beta") & (rounds.strategy == "random")].groupby("labels_total")["test_accuracy"].mean()
    aulc = np.trapezoid(beta.values, beta.index.values) / (beta.index[-1] - beta.index[0])
    row = next(r for r in page.tables["table-beta_oracle_tfidf-lr"] if r[0] == "random")
    assert row[6].startswith(f"{aulc:.3f} ± ")

    # each configuration links to its rounds, every seed, as in rounds.csv
    run_tables = {tid: rows for tid, rows in page.tables.items() if tid.startswith("run-")}
    assert len(run_tables) == 9 and all(len(rows) == 1 + 8 for rows in run_tables.values())
    detail = run_tables["run-alpha_recorded_tfidf-lr_margin-rounds"]
    want = rounds[(rounds.teacher == "recorded") & (rounds.strategy == "margin")].sort_values(["seed", "labels_total"])
    assert [r[3] for r in detail[1:]] == [f"{v:.4f}" for v in want["test_accuracy"]]
    assert sum(h.startswith("#run-") for h in page.hrefs) == 9

    # the Python entry point rebuilds the same page from the files alone
    first = page.tables
    (out / "report.html").unlink()
    assert write_html_report(out, md=md) == out / "report.html"
    again = Page((out / "report.html").read_text(encoding="utf-8"))
    assert again.tables == first and len(again.srcs) == 3
    _check_page(again, out)
    with pytest.raises(ThriftyError, match="rounds.csv"):
        write_html_report(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def committed_page(tmp_path_factory) -> Path:
    """The page of the committed grid (270 runs, 9 plots, the scale probe), rebuilt from a copy of its files."""
    src = REPO / "benchmarks" / "results"
    out = tmp_path_factory.mktemp("committed") / "results"
    (out / "plots").mkdir(parents=True)
    for name in ("rounds.csv", "scale.csv", "scale.png"):
        shutil.copy(src / name, out / name)
    for p in (src / "plots").glob("*.png"):
        shutil.copy(p, out / "plots" / p.name)
    return write_html_report(out)


def test_page_of_the_committed_benchmarks(committed_page):
    """One page under 2 MB with every plot, every section and every configuration's rounds."""
    out = committed_page.parent
    assert committed_page.stat().st_size < 2_000_000
    page = Page(committed_page.read_text(encoding="utf-8"))
    _check_page(page, out)
    rounds = pd.read_csv(out / "rounds.csv")
    assert Counter(page.sections) == Counter(rounds.groupby(["dataset", "teacher", "student"]).size().index.get_level_values(0))
    assert len(page.srcs) == len(list((out / "plots").glob("*.png"))) + 1  # every learning curve and the scale plot
    assert {"overall", "headline", "match-random", "per-dataset", "mraru", "scale"} <= set(page.ids)
    n_configs = rounds.groupby(["dataset", "teacher", "student", "strategy"]).ngroups
    assert sum(t.startswith("run-") for t in page.tables) == n_configs


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (scripts/test.sh installs it)")
def test_page_renders_offline_in_headless_chromium(committed_page):
    """No console error, no request, every image decoded; a configuration's link opens its rounds."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            tab = browser.new_page()
            errors, requests = [], []
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            tab.goto(committed_page.as_uri())
            sizes = tab.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            n_png = len(list((committed_page.parent / "plots").glob("*.png"))) + 1  # the curves and the scale plot
            assert len(sizes) == n_png and all(w > 100 and h > 100 for w, h in sizes)
            assert tab.eval_on_selector_all("details[open]", "els => els.length") == 0
            link = tab.locator('a[href^="#run-trec6_recorded_"]').first
            target = link.get_attribute("href")[1:]
            link.click()
            opened = tab.eval_on_selector_all("details[open] div[id]", "els => els.map(e => e.id)")
            rounds = pd.read_csv(committed_page.parent / "rounds.csv")
            want = rounds[(rounds.dataset == "trec6") & (rounds.teacher == "recorded") & (rounds.strategy == link.inner_text())]
            assert opened == [target] and tab.locator(f"#{target} tr").count() == 1 + len(want) > 1
        finally:
            browser.close()
    assert errors == [] and requests == []
