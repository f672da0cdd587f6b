"""Does exporting the fine-tuned mpnet to int8 ONNX (``text-finetune[...,int8=true]``, what ``thrifty label
--finetune`` fits) cost agreement, and how much faster does it predict? Side by side in one process on the
students ``label_finetune_probe.py`` saved (``THRIFTY_PROBE_SAVE=DIR``), on the same held-out rows:
accuracy vs the teacher, the least escalation meeting 0.90 / 0.95 / 0.98 there (no guarantee, same rule for both),
how often the two agree on the label, and documents/s of each (2 threads).

    THRIFTY_PROBE_SAVE=/tmp/probe OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_finetune_probe.py ag_news
    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_finetune_int8.py /tmp/probe ag_news
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import recorded
from label_finetune_probe import oracle, split

from thrifty.students import FineTuneStudent, full_proba


def timed_proba(student, texts, k):
    t0 = time.perf_counter()
    P = full_proba(student, texts, k)
    return P, len(texts) / (time.perf_counter() - t0)


def main(folder, names):
    torch.set_num_threads(2)
    for name in names:
        task, texts, T = recorded(name)
        test, _ = split(T)
        docs = np.asarray([texts[i] for i in test], dtype=object)
        student = FineTuneStudent.load(Path(folder) / name)
        student.threads = 2
        P = {}
        P["torch fp32"], fp32_rate = timed_proba(student, docs, task.n_labels)
        t0 = time.perf_counter()
        student.to_int8()
        export_s = time.perf_counter() - t0
        P["onnx int8"], int8_rate = timed_proba(student, docs, task.n_labels)
        res = {s: {"accuracy": round(float((p.argmax(1) == T[test]).mean()), 4),
                   **{f"escalation@{t}": oracle(p, T[test], t) for t in (0.9, 0.95, 0.98)}} for s, p in P.items()}
        same = float((P["torch fp32"].argmax(1) == P["onnx int8"].argmax(1)).mean())
        print(name, json.dumps({"test": len(test), "docs_per_s": {"torch fp32": round(fp32_rate, 1),
                                "onnx int8": round(int8_rate, 1)}, "speedup": round(int8_rate / fp32_rate, 2),
                                "export_s": round(export_s), "same_label": round(same, 4), **res}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
