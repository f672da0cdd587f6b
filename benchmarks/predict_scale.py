"""How fast `thrifty predict` labels a large corpus, and at what memory, vs the local LLM teacher.

Synthetic corpora of N short docs are made by resampling the ag_news pool texts into
Parquet (written in chunks). For each student x size x engine, `thrifty predict` runs as a
subprocess; docs/s is rows / wall time of that process (start-up, model load and Parquet
writing included) and peak RSS is the largest sum of RSS over its process tree (Ray's
raylet and workers included), sampled every 0.2 s from /proc.

The teacher's docs/s is measured in the same run, after the students, with the local
llama.cpp teacher (`--teacher-spec`, default local:qwen-0.5b; `--teacher-docs 0` skips it) on
`--teacher-docs` pool texts; the recorded per-doc `seconds` of the Qwen2.5-1.5B recording is
reported beside it.

    nice -n 10 python benchmarks/predict_scale.py --out /tmp/scale --sizes 100000 1000000 \
        --students tfidf-lr static-lr --engines local ray
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

DATA = Path("/work/shared/datasets/ag_news")


def tree_rss_mib(root: int) -> float:
    """Sum of VmRSS over ``root`` and all its descendants (Linux /proc)."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            parent[int(d)] = int(fields["PPid"])
            rss[int(d)] = int(fields.get("VmRSS", "0 kB").split()[0])
        except (OSError, KeyError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(rss.get(p, 0) for p in tree) / 1024


def run_measured(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while p.poll() is None:
        peak = max(peak, tree_rss_mib(p.pid))
        time.sleep(0.2)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return wall, peak, subprocess.CompletedProcess(cmd, p.returncode, out, err)


def make_corpus(path: Path, n: int, texts: list[str], max_chars: int | None, chunk: int = 200_000) -> Path:
    if path.exists() and pq.read_metadata(path).num_rows == n:
        return path
    rng = np.random.default_rng(n)
    src = np.asarray([t[:max_chars] if max_chars else t for t in texts], dtype=object)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, pa.schema([("doc_id", pa.int64()), ("text", pa.string())])) as w:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            w.write_table(pa.table({"doc_id": np.arange(start, start + m, dtype=np.int64),
                                    "text": pa.array(src[rng.integers(0, len(src), m)], type=pa.string())}))
    tmp.replace(path)
    return path


def teacher_docs_per_s(spec: str, texts: list[str]) -> dict:
    """Label ``texts`` with a local teacher (no ledger: every call is real) and time it."""
    from thrifty.task import Task
    from thrifty.teachers import make_teacher

    task = Task.load(DATA / "labels.json")
    try:
        teacher = make_teacher(spec, task)
        teacher.label(texts[:2])  # load the model and fill the prefix cache, not timed
    except Exception as e:  # noqa: BLE001 - reported, the benchmark goes on with the recording
        return {"spec": spec, "error": f"{type(e).__name__}: {e}"}
    t0 = time.perf_counter()
    teacher.label(texts)
    secs = time.perf_counter() - t0
    return {"spec": spec, "docs": len(texts), "seconds": secs, "docs_per_s": len(texts) / secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--students", nargs="+", default=["tfidf-lr", "static-lr"])
    ap.add_argument("--engines", nargs="+", default=["local", "ray"])
    ap.add_argument("--workers", type=int, default=None, help="local engine worker processes (default: CPUs)")
    ap.add_argument("--batch-size", type=int, default=8192)
    ap.add_argument("--max-chars", type=int, default=None, help="truncate the resampled texts (shorter docs)")
    ap.add_argument("--budget", type=int, default=300, help="labels for the runs the students come from")
    ap.add_argument("--teacher-spec", default="local:qwen-0.5b")
    ap.add_argument("--teacher-docs", type=int, default=40)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    thrifty = str(bin_dir / "thrifty")
    pool = pcsv.read_csv(DATA / "pool.csv").column("text").to_pylist()
    rec = pcsv.read_csv(DATA / "teacher_qwen2.5-1.5b.csv").column("seconds").to_numpy()
    results: dict = {"recorded_teacher": {"model": "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (recorded)",
                                          "mean_seconds_per_doc": float(np.mean(rec)),
                                          "docs_per_s": float(1 / np.mean(rec))},
                     "host": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}, "rows": []}
    for student in a.students:
        run = a.out / f"run-{student}"
        if not (run / "model" / "model.json").exists():
            r = subprocess.run([thrifty, "distill", str(DATA / "pool.csv"), "--labels", str(DATA / "labels.json"),
                                "--teacher", f"replay:{DATA / 'teacher_qwen2.5-1.5b.csv'}", "--budget", str(a.budget),
                                "--student", student, "--out", str(run), "-q"], capture_output=True, text=True)
            if r.returncode != 0:
                results["rows"].append({"student": student, "error": (r.stdout + r.stderr)[-500:]})
                print(json.dumps(results["rows"][-1]), flush=True)
                continue
        for n in a.sizes:
            corpus = make_corpus(a.out / f"corpus-{n}.parquet", n, pool, a.max_chars)
            for engine in a.engines:
                out = a.out / f"pred-{student}-{n}-{engine}" / ("out.parquet" if engine == "local" else "parts")
                summ = out.parent / "summary.json"
                if out.parent.exists():
                    import shutil

                    shutil.rmtree(out.parent)
                out.parent.mkdir(parents=True)
                cmd = [thrifty, "predict", str(run), str(corpus), "--out", str(out), "--id-col", "doc_id",
                       "--engine", engine, "--batch-size", str(a.batch_size), "-q", "--summary-json", str(summ)]
                if a.workers and engine == "local":
                    cmd += ["--workers", str(a.workers)]
                wall, peak, _ = run_measured(cmd)
                s = json.loads(summ.read_text())
                row = {"student": student, "n": n, "engine": engine, "workers": s["workers"], "wall_s": wall,
                       "docs_per_s": n / wall, "docs_per_s_inside": s["docs_per_s"], "peak_rss_mib": peak,
                       "loadavg": os.getloadavg()[0]}
                row["x_recorded_teacher"] = row["docs_per_s"] / results["recorded_teacher"]["docs_per_s"]
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
                (a.out / "results.json").write_text(json.dumps(results, indent=2))
    # the teacher last, in the same run: the student numbers come first if it is slow or missing
    if a.teacher_docs > 0:
        texts = [t[:a.max_chars] if a.max_chars else t for t in pool[100:100 + a.teacher_docs]]  # the students' docs
        results["local_teacher"] = lt = teacher_docs_per_s(a.teacher_spec, texts)
        print(json.dumps(lt), flush=True)
        for row in results["rows"]:
            if "docs_per_s" in row and lt.get("docs_per_s"):
                row["x_local_teacher"] = row["docs_per_s"] / lt["docs_per_s"]
    (a.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
