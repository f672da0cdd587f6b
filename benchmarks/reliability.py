"""Reliability trials at length: kill -9, Ctrl-C, concurrent runs and refused texts against real
processes and the simulated teacher over HTTP; prints and writes ``test | tried | survived | lost | paid twice``.

    nice -n 10 .venv/bin/python benchmarks/reliability.py --kills 10             # this tree
    nice -n 10 .venv/bin/python benchmarks/reliability.py --kills 10 \\
        --thrifty-src /tmp/base/src --tag before                                  # another tree's CLI

``lost``: answers the server delivered (billed) that are neither in the ledger nor counted by it as
possibly billed; for predict trials, worker processes still alive 3 s after their parent was killed.
``paid twice``: texts the server answered more than once. The trials are those of tests/reliability/.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from thrifty.bench.reliability import Harness, make_pool, summarise, table

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=5, help="kill -9 trials of each kind")
    ap.add_argument("--predict-kills", type=int, default=None, help="kill -9 trials of predict (default: --kills)")
    ap.add_argument("--concurrent", type=int, default=2, help="trials of 2 distills sharing one ledger")
    ap.add_argument("--ctrl-c", type=int, default=2, help="Ctrl-C trials")
    ap.add_argument("--refusals", type=int, default=1, help="runs with always-refused texts")
    ap.add_argument("--dataset", type=Path, default=None, help="default: the shared ag_news")
    ap.add_argument("--rows", type=int, default=300, help="pool rows")
    ap.add_argument("--budget", type=int, default=45)
    ap.add_argument("--thrifty-src", default=None, help="run the CLI from this source tree (PYTHONPATH)")
    ap.add_argument("--tag", default="after", help="name of the result files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reliability")
    args = ap.parse_args()
    from thrifty.bench.datasets import shared_root

    dataset = args.dataset or shared_root() / "datasets" / "ag_news"
    rng = np.random.default_rng(args.seed)
    trials = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="thrifty-reliability-") as tmp:
        work = Path(tmp)
        h = Harness(make_pool(dataset, work / "pool", args.rows), work, budget=args.budget, batch=15,
                    thrifty_src=args.thrifty_src)

        def note(t):
            trials.append(t)
            print(f"[{time.perf_counter() - t0:7.1f}s] {t.test}: survived={t.survived} lost={t.lost} "
                  f"paid_twice={t.paid_twice} possibly_billed={t.possibly_billed} ({t.detail})", flush=True)

        for j in range(args.kills):
            note(h.distill_kill(rng, True, f"distill kill -9, nothing in transit#{j}"))
            note(h.distill_kill(rng, False, f"distill kill -9, random instant#{j}"))
        for j in range(args.concurrent):
            note(h.concurrent(2, f"2 distills, one --ledger#{j}"))
        for j in range(args.ctrl_c):
            note(h.interrupt(rng, f"distill Ctrl-C, requests in flight#{j}"))
        for j in range(args.refusals):
            note(h.refusals(f"distill, 1 text in 6 always refused#{j}"))
        n_predict = args.kills if args.predict_kills is None else args.predict_kills
        if n_predict:
            import pyarrow as pa
            import pyarrow.parquet as pq

            from thrifty.testing.sim import SimServer

            with SimServer.from_path(h.pool) as sim:  # a trained run to predict with
                r = h.run(h.distill_cmd(sim, work / "model-run"))
                assert r.returncode == 0, r.stderr[-2000:]
            texts = [line for line in (h.pool / "pool.csv").read_text(encoding="utf-8").splitlines()[1:]] * 10
            corpus = work / "corpus.parquet"
            pq.write_table(pa.table({"text": texts}), corpus)
            ref = work / "ref.parquet"
            r = h.run([sys.executable, "-m", "thrifty", "predict", str(work / "model-run"), str(corpus), "--out", str(ref),
                       "--batch-size", "200", "--workers", "1", "-q"])
            assert r.returncode == 0, r.stderr[-2000:]
            for j in range(n_predict):
                note(h.predict_kill(work / "model-run", corpus, ref, rng, f"predict kill -9 (lost = orphaned workers)#{j}"))
    rows = summarise(trials)
    md = table(rows)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/reliability.py " + " ".join(sys.argv[1:])
    (args.out / f"{args.tag}.md").write_text(f"<!-- {cmd} ; {time.perf_counter() - t0:.0f}s -->\n{md}\n", encoding="utf-8")
    (args.out / f"{args.tag}.json").write_text(json.dumps({"command": cmd, "rows": rows,
                                                           "trials": [t.as_dict() for t in trials]}, indent=1))


if __name__ == "__main__":
    main()
