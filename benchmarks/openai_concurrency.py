"""Labels/s of the OpenAI-compatible teacher through the simulated server, by concurrency.

The server answers every request after ``--latency`` seconds (a stand-in for an LLM's
service time); the settings run interleaved, several repeats each, in one process, so the
ratios between them are meaningful on a noisy machine. ``--fault-rate`` adds 429 / 500 /
malformed / dropped replies at that rate each (Retry-After 0.05 s), to measure what
retries cost.

    nice -n 10 .venv/bin/python benchmarks/openai_concurrency.py --n 200 --latency 0.1 \
        --concurrency 1,8 --out benchmarks/results/openai_concurrency.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from thrifty.testing.sim import Fault, Faults, SimServer
from thrifty.task import Task
from thrifty.teachers.openai import OpenAITeacher

DATA = Path("/work/shared/datasets/ag_news")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="texts per measurement")
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    task = Task.load(DATA / "labels.json")
    with open(DATA / "pool.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    levels = [int(c) for c in a.concurrency.split(",")]
    f = Fault(rate=a.fault_rate)
    faults = Faults(rate_limit=f, server_error=f, malformed=f, drop=f, retry_after=0.05)
    rates: dict[int, list[float]] = {c: [] for c in levels}
    accuracy: dict[int, float] = {}
    with SimServer.from_path(DATA, latency=a.latency, faults=faults, seed=1) as sim:
        for r in range(a.repeats):
            for c in levels:  # interleaved: noise hits every setting alike
                chunk = rows[(r * len(levels) + levels.index(c)) * a.n:][: a.n]  # fresh texts each time
                t = OpenAITeacher(task, "sim", base_url=sim.base_url, concurrency=c, max_retries=10, backoff_base=0.02)
                t0 = time.perf_counter()
                labs = t.label([x["text"] for x in chunk])
                rates[c].append(len(chunk) / (time.perf_counter() - t0))
                accuracy[c] = sum(lab.label == x["label"] for lab, x in zip(labs, chunk)) / len(chunk)
        stats = sim.stats()
    base = levels[0]
    result = {
        "n": a.n, "latency_s": a.latency, "repeats": a.repeats, "fault_rate": a.fault_rate,
        "labels_per_s_median": {c: round(statistics.median(v), 2) for c, v in rates.items()},
        "labels_per_s_all": {c: [round(x, 2) for x in v] for c, v in rates.items()},
        "speedup_vs_first": {c: round(statistics.median(v) / statistics.median(rates[base]), 2) for c, v in rates.items()},
        "accuracy": accuracy, "server": {k: v for k, v in stats.items() if k != "answered_by_text"},
    }
    print(json.dumps(result, indent=2))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
