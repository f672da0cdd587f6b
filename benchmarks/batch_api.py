"""The same labels through the interactive path and through the Batch API, against the simulated server.

Both paths get 10% injected failures: the interactive server answers 10% of requests with HTTP 500
(retried with backoff), the batch server fails 10% of batch lines (submitted again on their own).
Both go through the ledger (real SQLite), priced with the model's real list and Batch API rates.
Reported per path: dollars, HTTP requests, wall time, labels lost (texts with no answer in the
ledger) and labels paid twice (texts the server answered more than once), and whether both paths
gave the same labels.

    nice -n 10 .venv/bin/python benchmarks/batch_api.py --n 1000 --out benchmarks/results/batch_api.json
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

from thrifty.testing.sim import Fault, Faults, SimServer
from thrifty.task import Task
from thrifty.teachers import CachedTeacher, Ledger
from thrifty.teachers.openai import OpenAITeacher
from thrifty.teachers.pricing import price_for_spec

DATA = Path("/work/shared/datasets/ag_news")


def run(path: str, texts: list[str], task: Task, model: str, failure: float, tmp: Path) -> tuple[dict, list]:
    batch = path == "batch"
    faults = Faults() if batch else Faults(server_error=Fault(rate=failure))
    with SimServer.from_path(DATA, faults=faults, batch_line_failure=failure if batch else 0.0, seed=1) as sim:
        t = OpenAITeacher(task, model, base_url=sim.base_url, api_key_env="THRIFTY_BENCH_NO_KEY",
                          price=price_for_spec(f"openai:{model}"), max_retries=10, backoff_base=0.02,
                          batch_api=batch, batch_poll=0.05, batch_rounds=5, seed=1)
        with Ledger(tmp / f"{path}.sqlite") as led:
            t0 = time.perf_counter()
            labs = CachedTeacher(t, led, run=path).label(texts)
            wall = time.perf_counter() - t0
            st, stored = led.stats(), led.n_labels()
        s = sim.stats()
    http = s["requests"] + s["batch_api_calls"]
    return {
        "dollars": round(st.dollars, 6), "paid_answers": st.calls, "http_requests": http,
        "chat_requests": s["requests"], "batch_api_calls": s["batch_api_calls"], "batches": s["batches_created"],
        "batch_lines_submitted": s["batch_lines_submitted"], "faults_injected": s["faults"],
        "labels_lost": len(set(texts)) - stored, "labels_paid_twice": s["texts_answered_twice"],
        "wall_s": round(wall, 2),
    }, [lab.label for lab in labs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="texts labelled by each path")
    ap.add_argument("--failure", type=float, default=0.1, help="injected failure rate (requests / batch lines)")
    ap.add_argument("--model", default="gpt-4o-mini", help="model whose list and batch prices are used")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    task = Task.load(DATA / "labels.json")
    with open(DATA / "pool.csv", newline="", encoding="utf-8") as f:
        texts = list(dict.fromkeys(r["text"] for r in csv.DictReader(f)))[: a.n]
    with tempfile.TemporaryDirectory() as d:
        inter, l1 = run("interactive", texts, task, a.model, a.failure, Path(d))
        batch, l2 = run("batch", texts, task, a.model, a.failure, Path(d))
    price = price_for_spec(f"openai:{a.model}")
    result = {
        "n": len(texts), "failure_rate": a.failure, "model": a.model, "price": price.describe(),
        "interactive": inter, "batch_api": batch,
        "batch_dollars_ratio": round(batch["dollars"] / inter["dollars"], 4),
        "same_labels": l1 == l2,
        "command": f"nice -n 10 .venv/bin/python benchmarks/batch_api.py --n {a.n} --failure {a.failure} --model {a.model}",
    }
    print(json.dumps(result, indent=2))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
