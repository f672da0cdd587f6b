"""Where do the student's disagreements with the teacher fall? By the teacher's own confidence (the probability its
recorded distribution gives the label it answered), on the sets recorded with Qwen2.5-1.5B's distributions.

mpnet-lr trained on every teacher label, 5-fold cross-fitted (the all-labels ceiling of docs/label.md), few-shot rows
excluded. Per bin of teacher confidence: its share of the documents, the student's agreement with the teacher there,
and its share of all disagreements. Then the least escalation meeting 0.90 / 0.95 / 0.98 when the documents are
escalated by the student's confidence (the ceiling) and by the teacher's confidence (unknown before asking it: a
bound on what any score of the student could reach with this student's labels).

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_teacher_ties.py ag_news trec6 banking77
"""
import json
import sys

import numpy as np
from _common import lr_proba, recorded_mpnet
from sklearn.model_selection import KFold

from thrifty.bench.datasets import _read_recording, load_dataset
from thrifty.cascade import agreement_curve

BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


def teacher_confidence(name: str, texts) -> np.ndarray:
    """The recorded teacher's probability of its own answer, per document of ``recorded(name)``'s corpus."""
    data = load_dataset(name)
    rec = _read_recording(data.recorded[0])
    where = {int(r): j for j, r in enumerate(data.rows)}
    by_text = {data.corpus.texts[where[int(r)]]: float(c or "nan")
               for r, c in zip(rec["row"], rec["teacher_confidence"]) if int(r) in where}
    return np.asarray([by_text[t] for t in texts])


def least_escalation(score, pred, T, target):
    _, agree, esc = agreement_curve(score, pred, T)
    return round(float(esc[agree / len(T) >= target].min() / len(T)), 4)


def main(names):
    for name in names:
        task, texts, T, X, ok = recorded_mpnet(name)
        conf = teacher_confidence(name, texts)[ok]
        P = np.zeros((len(T), task.n_labels))
        for tr, te in KFold(5, shuffle=True, random_state=0).split(ok):
            P[ok[te]] = lr_proba(X, T, ok[tr], task.n_labels)[ok[te]]
        P, y = P[ok], T[ok]
        pred = P.argmax(1)
        agree = pred == y
        bins = {}
        for lo, hi in zip(BINS, BINS[1:]):
            m = (conf >= lo) & (conf < hi)
            bins[f"[{lo:.1f},{min(hi, 1.0):.1f})"] = {
                "share": round(float(m.mean()), 3), "agreement": round(float(agree[m].mean()), 3),
                "share_of_disagreements": round(float((m & ~agree).sum() / (~agree).sum()), 3)}
        esc = {f"{by}@{t}": least_escalation(s, pred, y, t) for by, s in (("student", P.max(1)), ("teacher", conf))
               for t in (0.9, 0.95, 0.98)}
        print(name, json.dumps({"n": len(ok), "agreement": round(float(agree.mean()), 4),
                                "bins": bins, "escalation": esc}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
