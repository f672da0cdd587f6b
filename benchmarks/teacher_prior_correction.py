"""Prior correction on the recorded local Qwen-1.5B teacher (no LLM calls).

Uses the real label distributions in ``teacher_qwen2.5-1.5b.csv`` (pool rows; few-shot rows
excluded). The prior is estimated on one random half of the rows (labels unused) and the
accuracy / ECE are measured on the other half, raw and prior-corrected.

    .venv/bin/python benchmarks/teacher_prior_correction.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from thrifty.calibration import calibration_report, estimate_prior

DATA = Path("/work/shared/datasets")


def main() -> None:
    for ds in ("ag_news", "trec6", "banking77"):
        d = DATA / ds
        if not (d / "teacher_qwen2.5-1.5b.csv").exists():
            continue
        rec = pd.read_csv(d / "teacher_qwen2.5-1.5b.csv")
        shots = set(json.loads((d / "teacher_qwen2.5-1.5b.json").read_text()).get("shot_rows") or [])
        labels = json.loads((d / "labels.json").read_text())["labels"]
        gold = pd.read_csv(d / "pool.csv")["label"].to_numpy()
        rec = rec[~rec.row.isin(shots)]
        p = np.array([[json.loads(s)[lab] for lab in labels] for s in rec.teacher_probs])
        p = p / p.sum(axis=1, keepdims=True)
        y = np.array([labels.index(g) for g in gold[rec.row.to_numpy()]])
        perm = np.random.default_rng(0).permutation(len(y))
        half_a, half_b = perm[: len(y) // 2], perm[len(y) // 2 :]
        r = calibration_report(p[half_b], y[half_b], estimate_prior(p[half_a]))
        print(f"{ds}: {len(half_b)} rows; accuracy {r.accuracy:.3f} -> {r.accuracy_corrected:.3f}; "
              f"ECE {r.ece:.3f} -> {r.ece_corrected:.3f}")


if __name__ == "__main__":
    main()
