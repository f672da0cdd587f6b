"""How should the fine-tuned mpnet predict: torch, ONNX, or int8 ONNX (``text-finetune[...,onnx=none|fp32|int8]``)?
Side by side in one process on the students ``label_finetune_probe.py`` saved (``THRIFTY_PROBE_SAVE=DIR``), on
the same held-out rows: documents/s of each (2 threads), how often each agrees with torch on the label,
accuracy vs the teacher and the least escalation meeting 0.90 / 0.95 / 0.98 there (no guarantee, the same rule for
all); and the same for the frozen ensemble pooled with each (geometric mean: the candidate ``--finetune`` tests).

    THRIFTY_PROBE_SAVE=/tmp/probe OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_finetune_probe.py ag_news
    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_finetune_onnx.py /tmp/probe ag_news
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import recorded
from label_finetune_probe import oracle, split

from thrifty.features import make_features
from thrifty.labelling.ensemble import Ensemble, combine, ensemble_members
from thrifty.students import FineTuneStudent, full_proba

RUNTIMES = {"torch": None, "onnx fp32": False, "onnx int8": True}  # name -> to_onnx(quantize=...)


def main(folder, names):
    torch.set_num_threads(2)
    for name in names:
        task, texts, T = recorded(name)
        test, train = split(T)
        docs = np.asarray([texts[i] for i in test], dtype=object)
        P, rate, export_s = {}, {}, {}
        for kind, quantize in RUNTIMES.items():
            student = FineTuneStudent.load(Path(folder) / name)
            student.threads = 2
            if quantize is not None:
                t0 = time.perf_counter()
                student.to_onnx(quantize=quantize)
                export_s[kind] = round(time.perf_counter() - t0)
            t0 = time.perf_counter()
            P[kind] = full_proba(student, docs, task.n_labels)
            rate[kind] = round(len(docs) / (time.perf_counter() - t0), 1)
        feats = make_features("mpnet").fit(texts)
        ens = Ensemble(ensemble_members("mpnet-lr"), task.n_labels).fit(
            texts, train, T[train], first=(feats, np.asarray(feats.transform(texts), dtype=np.float32))).proba_[test]
        for kind in RUNTIMES:
            P[f"ensemble x {kind}"] = combine(np.array([0.5, 0.5]), [ens, P[kind]])
        res = {s: {"accuracy": round(float((p.argmax(1) == T[test]).mean()), 4),
                   **{f"escalation@{t}": oracle(p, T[test], t) for t in (0.9, 0.95, 0.98)}} for s, p in P.items()}
        same = {k: round(float((P["torch"].argmax(1) == P[k].argmax(1)).mean()), 4) for k in RUNTIMES}
        print(name, json.dumps({"test": len(test), "docs_per_s": rate, "export_s": export_s,
                                "same_label_as_torch": same, **res}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
