"""The benchmark harness cannot mislead: datasets keyed by full path, --test/--gold-col for files,
"never reached" counted as worst in medians, budgets per class, spread and per-class columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from thrifty.bench import GridSpec, load_dataset, make_bench_teacher, run_benchmark
from thrifty.bench.grid import MemoFeatures, full_pool_accuracy, parse_student
from thrifty.bench.metrics import median_worst
from thrifty.cli import app
from thrifty.errors import ThriftyError
from thrifty.features import make_features

WORDS = {"pos": ["great", "lovely", "superb", "fine"], "neg": ["awful", "bad", "poor", "dull"]}


def _write(path, n, seed, noise, text_col="text", gold_col="label"):
    """A separable two-class file; ``noise`` = share of labels flipped at random (a harder set)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = "pos" if i % 2 else "neg"
        text = f"review {i} " + " ".join(rng.choice(WORDS[y], 3)) + " " + " ".join(rng.choice(["movie", "film", "plot"], 2))
        label = y if rng.random() >= noise else rng.choice(["pos", "neg"])
        rows.append({text_col: text, gold_col: label})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _spec(datasets, **kw):
    base = dict(strategies=["random"], students=["tfidf[char=false]-lr"], teachers=["oracle"], seeds=1,
                budget=60, batch=20, seed_size=20)
    base.update(kw)
    return GridSpec(datasets=[str(d) for d in datasets], **base)


def test_same_stem_files_are_two_datasets(tmp_path):
    """Regression: a/pool.csv and b/pool.csv shared the cache key of their full-pool ceiling and one
    report row (the second silently got the first's full-pool accuracy; curves were averaged)."""
    a = _write(tmp_path / "a" / "pool.csv", 300, seed=0, noise=0.0)
    b = _write(tmp_path / "b" / "pool.csv", 300, seed=1, noise=0.6)
    summary = run_benchmark(_spec([a, b]), out_dir=tmp_path / "out", md=None, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert len(summary) == 2, summary[["dataset", "full_pool_accuracy"]]
    by = summary.set_index("dataset")["full_pool_accuracy"]
    for path in (a, b):
        data = load_dataset(path)
        assert data.name == str(path.resolve())
        feats = MemoFeatures(make_features("tfidf", char=False).fit(data.corpus.texts))
        expect = full_pool_accuracy(make_bench_teacher("oracle", data), data, feats, parse_student("tfidf-lr")[2])
        assert by[str(path.resolve())] == pytest.approx(expect)
    assert by[str(a.resolve())] > by[str(b.resolve())] + 0.2  # the noisy set really is another dataset
    # an edited file is another dataset too: its cached runs are not reused
    _write(a, 300, seed=5, noise=0.6)
    again = run_benchmark(_spec([a]), out_dir=tmp_path / "out2", md=None, cache_dir=tmp_path / "cache", log=lambda m: None)
    assert again["full_pool_accuracy"].iloc[0] < by[str(a.resolve())] - 0.2


def test_cli_test_file_gold_col_names_and_budget_per_class(tmp_path):
    pool = _write(tmp_path / "x" / "pool.csv", 400, seed=2, noise=0.0, text_col="body", gold_col="y")
    test = _write(tmp_path / "x" / "held.csv", 120, seed=3, noise=0.0, text_col="body", gold_col="y")
    out, md = tmp_path / "res", tmp_path / "B.md"
    args = ["bench", "-d", f"mine={pool}", "--test", str(test), "--gold-col", "y", "--text-col", "body",
            "-s", "random,margin", "--students", "tfidf[char=false]-lr", "-t", "oracle", "--seeds", "2",
            "--budget-per-class", "40", "--batch", "20", "--seed-size", "20", "--out", str(out), "--md", str(md),
            "--cache", str(tmp_path / "cache")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rounds = pd.read_csv(out / "rounds.csv")
    assert set(rounds["dataset"]) == {"mine"}
    assert rounds["labels_total"].max() == 80  # 40 labels per class x 2 classes
    data = load_dataset(f"mine={pool}", test=test, gold_col="y", text_col="body")
    assert len(data.corpus) == 400 and len(data.test_texts) == 120  # the whole file is the pool: no 80/20 split
    summary = pd.read_csv(out / "summary.csv")
    assert {"final_accuracy_std", "aulc_std", "acc_at_10_per_class", "acc_at_40_per_class"} <= set(summary.columns)
    assert summary["final_accuracy_std"].notna().all() and summary["acc_at_20_per_class"].notna().all()
    text = md.read_text()
    assert "## Overall" in text and "AULC ± sd" in text and "acc at 20/class" in text
    # the error for a missing gold column names an option that exists
    bad = CliRunner().invoke(app, ["bench", "-d", str(pool), "--gold-col", "nope", "--out", str(out), "--md", str(md),
                                   "--cache", str(tmp_path / "cache")])
    assert bad.exit_code != 0 and "--gold-col" in bad.output
    assert "--gold-col" in CliRunner().invoke(app, ["bench", "--help"]).output
    # one --test file per file dataset
    res = CliRunner().invoke(app, ["bench", "-d", f"{pool},{pool}", "--test", str(test), "--gold-col", "y",
                                   "--text-col", "body", "--out", str(out), "--md", str(md)])
    assert res.exit_code != 0 and "one test file per" in res.output
    with pytest.raises(ThriftyError, match="does not exist"):
        load_dataset(pool, test=tmp_path / "missing.csv", gold_col="y", text_col="body")


def test_never_reached_counts_as_worst_in_medians(tmp_path):
    assert median_worst([0.5, None, None]) == math.inf
    assert median_worst([0.4, 0.6, None]) == pytest.approx(0.6)  # dropping None would give 0.5
    assert median_worst([]) is None
    rows = []
    # random reaches the full-pool accuracy; "slow" never reaches random's final accuracy on two of three sets
    curves = {"random": [0.5, 0.6, 0.7, 0.8], "fast": [0.7, 0.8, 0.8, 0.8], "slow": [0.4, 0.5, 0.6, 0.7]}
    for ds in ("d1", "d2", "d3"):
        for strat, curve in curves.items():
            c = curves["random"] if (strat == "slow" and ds == "d1") else curve
            for r, (lab, acc) in enumerate(zip([100, 200, 300, 400], c)):
                rows.append(dict(dataset=ds, teacher="oracle", student="s", strategy=strat, seed=0, round=r, labels_total=lab,
                                 test_accuracy=acc, pool_agreement=acc, dollars=0.0, select_s=0.01, full_pool_accuracy=0.8,
                                 n_classes=4))
    from thrifty.bench.report import headline, overall, write_report

    summary = write_report(pd.DataFrame(rows), tmp_path / "R.md", tmp_path, {}, "test")
    _, stats = headline(summary)
    assert stats["median_match"]["slow"][0] == math.inf and stats["median_match"]["slow"][1:] == (1, 3)
    assert stats["median_match"]["fast"][0] == pytest.approx(0.5)
    table = "\n".join(overall(summary))
    assert "| s | slow | never |" in table and "| s | fast | 0.50 |" in table
    assert 'count "never reached" as the worst value' in (tmp_path / "R.md").read_text()
    by = summary.set_index(["dataset", "strategy"])
    assert pd.isna(by.loc[("d1", "fast"), "acc_at_10_per_class"])  # 10/class = 40 labels: before the curve starts
    assert by.loc[("d1", "fast"), "acc_at_40_per_class"] == pytest.approx(0.76)  # 160 labels: 0.7 + 0.6 x (0.8 - 0.7)
