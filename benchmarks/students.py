"""Benchmark every student (FEATURES-CLASSIFIER) on gold labels: accuracy at 100/300/1000
training labels, fit seconds, predict docs/s (features + classifier, embedding cache off),
peak RSS; each also as a ratio to tfidf-lr measured in the same run.

Features are computed once per family in their own process and stored; each classifier then
runs in a fresh process on them. predict docs/s = 1 / (feature seconds per doc, cache off +
classifier seconds per doc); peak RSS = the larger of the two processes' peaks.

Training rows are a seeded random sample of pool.csv (nested: the 100 are inside the 300);
test.csv is used only for evaluation. Threads are capped (``--threads``, default 1) so timings on
a shared machine are comparable.

    nice -n 10 python benchmarks/students.py --datasets ag_news,banking77 --out benchmarks/results/students
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
DEFAULT_STUDENTS = [f"{f}-{c}" for f in ("tfidf", "static", "minilm") for c in ("lr", "svm", "lda", "rf", "gbdt")]
DEFAULT_STUDENTS.append("text-finetune")
BASELINE = "tfidf-lr"


def _load_split(data_dir: str, test_limit: int | None):
    import pandas as pd

    d = Path(data_dir)
    labels = json.loads((d / "labels.json").read_text())["labels"]
    index = {lab: i for i, lab in enumerate(labels)}
    pool, test = pd.read_csv(d / "pool.csv"), pd.read_csv(d / "test.csv")
    if test_limit:
        test = test.iloc[:test_limit]
    return (labels, pool["text"].astype(str).tolist(), pool["label"].map(index).to_numpy(),
            test["text"].astype(str).tolist(), test["label"].map(index).to_numpy())


def _save(path: Path, X) -> None:
    import scipy.sparse as sp

    if sp.issparse(X):
        sp.save_npz(path.with_suffix(".npz"), X.tocsr())
    elif X.dtype == object:
        path.with_suffix(".json").write_text(json.dumps(list(X)))
    else:
        np.save(path.with_suffix(".npy"), X, allow_pickle=False)


def _load(path: Path):
    import scipy.sparse as sp

    if path.with_suffix(".npz").exists():
        return sp.load_npz(path.with_suffix(".npz"))
    if path.with_suffix(".json").exists():
        return np.asarray(json.loads(path.with_suffix(".json").read_text()), dtype=object)
    return np.load(path.with_suffix(".npy"), allow_pickle=False)


def run_features(data_dir: str, feats_name: str, n_train: int, seed: int, threads: int, test_limit: int | None,
                 timing_n: int, work: str) -> dict:
    """Fit features on the pool (unlabelled texts), embed the training sample and the test set,
    store them under ``work`` and time the extractor on fresh texts (embedding cache off)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    from thrifty.features import make_features
    from thrifty.features.sentence import SentenceFeatures

    _, pool, _, test, _ = _load_split(data_dir, test_limit)
    order = np.random.default_rng(seed).permutation(len(pool))[:n_train]
    features = make_features(feats_name, threads=threads) if feats_name == "minilm" else make_features(feats_name)
    t0 = time.perf_counter()
    features.fit(pool)
    _save(Path(work) / "train", features.transform([pool[i] for i in order]))
    _save(Path(work) / "test", features.transform(test))
    out = {"features_s": round(time.perf_counter() - t0, 2)}
    if isinstance(features, SentenceFeatures):
        features.cache = False
    t0 = time.perf_counter()
    features.transform(test[:timing_n])
    out["feat_s_per_doc"] = (time.perf_counter() - t0) / len(test[:timing_n])
    out["feat_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def run_student(data_dir: str, student: str, sizes: list[int], seed: int, threads: int, test_limit: int | None,
                max_fit_s: float, timing_n: int, work: str) -> dict:
    """Fit one classifier at each size on the stored features; accuracy on the test set."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    from thrifty.config import split_student
    from thrifty.students import full_proba, make_student

    labels, pool, y_pool, test, y_test = _load_split(data_dir, test_limit)
    order = np.random.default_rng(seed).permutation(len(pool))[: max(sizes)]
    clf = split_student(student)[2]
    X_train, X_test = _load(Path(work) / "train"), _load(Path(work) / "test")
    row = {"dataset": Path(data_dir).name, "student": student, "test_rows": len(test)}
    fit_s = None
    for n in sizes:
        if fit_s is not None and fit_s > max_fit_s:
            row[f"acc_{n}"] = None  # skipped: the previous size already took longer than max_fit_s
            continue
        t0 = time.perf_counter()
        model = make_student(clf).fit(X_train[:n], y_pool[order[:n]])
        fit_s = time.perf_counter() - t0
        row[f"acc_{n}"] = round(float((full_proba(model, X_test, len(labels)).argmax(1) == y_test).mean()), 4)
        row["fit_s"], row["fit_at"] = round(fit_s, 3), n
    t0 = time.perf_counter()
    full_proba(model, X_test[:timing_n], len(labels))
    row["clf_s_per_doc"] = (time.perf_counter() - t0) / X_test[:timing_n].shape[0]
    row["clf_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return row


def add_ratios(rows: list[dict], sizes: list[int]) -> None:
    base = {r["dataset"]: r for r in rows if r["student"] == BASELINE}
    for r in rows:
        b = base.get(r["dataset"])
        if b is None:
            continue
        for k in [f"acc_{n}" for n in sizes] + ["predict_docs_s", "peak_rss_mb"]:
            r[f"{k}_x"] = round(r[k] / b[k], 3) if r.get(k) and b.get(k) else None
        same_n = r.get("fit_at") == b.get("fit_at")
        r["fit_s_x"] = round(r["fit_s"] / b["fit_s"], 2) if same_n and b.get("fit_s") else None


def markdown(rows: list[dict], sizes: list[int]) -> str:
    def f(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    head = ["dataset", "student", "test rows"] + [f"acc@{n} (x)" for n in sizes] + ["fit s @n (x)", "predict docs/s (x)", "peak RSS MB (x)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dataset"], r["student"], str(r["test_rows"])]
        cells += [f"{f(r.get(f'acc_{n}'))} ({f(r.get(f'acc_{n}_x'), '{:.2f}')})" for n in sizes]
        cells.append(f"{f(r.get('fit_s'), '{:.2f}')} @{r.get('fit_at')} ({f(r.get('fit_s_x'), '{:.2f}')})")
        cells.append(f"{f(r.get('predict_docs_s'), '{:.0f}')} ({f(r.get('predict_docs_s_x'), '{:.2f}')})")
        cells.append(f"{f(r.get('peak_rss_mb'), '{:.0f}')} ({f(r.get('peak_rss_mb_x'), '{:.2f}')})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ag_news,banking77")
    ap.add_argument("--students", default=",".join(DEFAULT_STUDENTS))
    ap.add_argument("--sizes", default="100,300,1000")
    ap.add_argument("--finetune-sizes", default="100,300", help="text-* students are slow on CPU: fewer sizes.")
    ap.add_argument("--finetune-test-limit", type=int, default=500, help="text-* students: first N test rows only.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-fit-s", type=float, default=240.0, help="skip larger sizes once a fit took longer.")
    ap.add_argument("--timing-n", type=int, default=300, help="test texts timed for predict docs/s.")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default="benchmarks/results/students")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    students = a.students.split(",")
    if BASELINE not in students:
        students.insert(0, BASELINE)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    ctx = mp.get_context("spawn")

    def child(fn, *args):  # a fresh process each, so peak RSS is that step's own
        with ProcessPoolExecutor(1, mp_context=ctx) as ex:
            return ex.submit(fn, *args).result()

    for ds in a.datasets.split(","):
        data_dir = str(Path(a.data) / ds)
        families: dict[str, list[str]] = {}
        for st in students:
            families.setdefault(st.rsplit("-", 1)[0], []).append(st)
        for feats, members in families.items():
            text = feats == "text"
            st_sizes = [int(s) for s in a.finetune_sizes.split(",")] if text else sizes
            limit = a.finetune_test_limit if text else None
            timing_n = min(a.timing_n, 100) if text else a.timing_n
            with tempfile.TemporaryDirectory(prefix="thrifty-bench-") as work:
                t0 = time.perf_counter()
                try:
                    fr = child(run_features, data_dir, feats, max(st_sizes), a.seed, a.threads, limit, timing_n, work)
                except Exception as e:  # keep going: one broken extractor must not lose the others' numbers
                    print(f"{ds} {feats}: FAILED {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                    continue
                print(f"{ds} features {feats} ({time.perf_counter() - t0:.0f}s): {fr}", flush=True)
                for st in members:
                    t0 = time.perf_counter()
                    try:
                        row = child(run_student, data_dir, st, st_sizes, a.seed, a.threads, limit, a.max_fit_s, timing_n, work)
                    except Exception as e:
                        print(f"{ds} {st}: FAILED {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                        continue
                    row["features_s"] = fr["features_s"]
                    row["predict_docs_s"] = round(1.0 / (fr["feat_s_per_doc"] + row.pop("clf_s_per_doc")), 1)
                    row["peak_rss_mb"] = max(fr["feat_rss_mb"], row.pop("clf_rss_mb"))
                    rows.append(row)
                    print(f"{ds} {st} ({time.perf_counter() - t0:.0f}s): {row}", flush=True)
                    _write(out, rows, sizes)


def _write(out: Path, rows: list[dict], sizes: list[int]) -> None:
    add_ratios(rows, sizes)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "students.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    (out / "students.md").write_text(markdown(rows, sizes))

if __name__ == "__main__":
    main()
