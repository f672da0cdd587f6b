"""Report size and build time on a 1,000-round history.

A real 1,000-round run (batch 1) is too slow on a shared 2-core machine, so this takes a real
finished run and replaces its history by a synthetic one of ``--rounds`` rows: the real rows'
metrics interpolated over the rounds (labels spread evenly over them), plus small noise. The
ledger, model, corpus and answers stay the real run's, so every figure is drawn as usual.

    python benchmarks/report_size.py RUN_DIR --rounds 1000
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from thrifty import build_report


def stretch(history: list[dict], rounds: int, rng: np.random.Generator) -> list[dict]:
    """``rounds`` rows whose numbers follow the real history's, labels non-decreasing."""
    real = np.linspace(0, 1, len(history))
    t = np.linspace(0, 1, rounds)
    out = []
    for j in range(rounds):
        row = dict(history[-1])
        for k, v in history[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                val = float(np.interp(t[j], real, [float(r.get(k) or 0) for r in history]))
                if k in ("val_agreement", "test_accuracy", "pool_gold_accuracy") and 0 < j < rounds - 1:
                    val = float(np.clip(val + rng.normal(0, 0.01), 0, 1))
                row[k] = int(round(val)) if isinstance(v, int) else round(val, 4)
        row["round"] = j
        row.pop("stop_reason", None)
        out.append(row)
    out[-1] = {**history[-1], **{k: out[-1][k] for k in ("round",)}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--rounds", type=int, default=1000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "run"
        shutil.copytree(a.run, d)
        state = json.loads((d / "state.json").read_text())
        hist = stretch(state["history"], a.rounds, np.random.default_rng(0))
        state["history"], state["round"] = hist, hist[-1]["round"]
        (d / "state.json").write_text(json.dumps(state))
        cols = list(dict.fromkeys(k for r in hist for k in r))
        with open(d / "history.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(hist)
        t0, c0 = time.perf_counter(), time.process_time()
        rep = build_report(d)
        cpu = time.process_time() - c0
        print(json.dumps({"rounds": len(hist), "figures": len(rep.figures), "bytes": rep.n_bytes,
                          "kib": round(rep.n_bytes / 1024, 1), "build_s": round(rep.seconds, 2), "cpu_s": round(cpu, 2),
                          "wall_s": round(time.perf_counter() - t0, 2)}))


if __name__ == "__main__":
    main()
