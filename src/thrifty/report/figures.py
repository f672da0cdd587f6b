"""The report's figures (matplotlib, Agg), each returned as PNG bytes.

Pure functions of arrays and history rows, so Python users can draw one figure alone.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

DPI = 80


def _plt():
    try:
        import matplotlib
    except ImportError:
        from ..errors import ThriftyError

        raise ThriftyError("The report draws its figures with matplotlib: pip install 'thrifty[plot]'.") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return buf.getvalue()


def _series(history: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.asarray([np.nan if r.get(key) in (None, "") else float(r[key]) for r in history], dtype=float)


CURVES = (("val_agreement", "agreement with teacher (validation)"), ("test_accuracy", "gold accuracy (test)"),
          ("pool_gold_accuracy", "gold accuracy (unlabelled pool)"))


def learning_curve(history: Sequence[dict[str, Any]]) -> bytes:
    """Agreement with the teacher and gold accuracy, against teacher labels and against dollars."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels, dollars = _series(history, "labels_total"), _series(history, "dollars")
    marker = "o" if len(history) <= 40 else None
    for key, name in CURVES:
        y = _series(history, key)
        if np.all(np.isnan(y)):
            continue
        axes[0].plot(labels, y, marker=marker, ms=3, lw=1.3, label=name)
        axes[1].plot(dollars, y, marker=marker, ms=3, lw=1.3, label=name)
    axes[0].set(xlabel="teacher labels (incl. validation)", ylabel="score")
    axes[1].set(xlabel="dollars spent", ylabel="score")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def spend_bars(spend: dict[str, dict[str, float]]) -> bytes:
    """Dollars and answers per purpose (seed, validation, selected, synthesis, cascade)."""
    plt = _plt()
    kinds = [k for k, v in spend.items() if v["answers"] or v["dollars"] or k != "unknown"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.0))
    axes[0].barh(kinds, [spend[k]["dollars"] for k in kinds], color="#4c72b0")
    axes[0].set(xlabel="dollars")
    axes[1].barh(kinds, [spend[k]["answers"] for k in kinds], color="#55a868")
    axes[1].set(xlabel="teacher answers")
    for ax in axes:
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)


def confusion(matrix: np.ndarray, labels: Sequence[str]) -> bytes:
    """Student (columns) against teacher (rows) on the validation slice, with counts."""
    plt = _plt()
    k = len(labels)
    size = min(12.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(matrix, cmap="Blues")
    if k <= 30:
        ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels, fontsize=8)
        thr = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if matrix[i, j] > thr else "black")
    ax.set(xlabel="student", ylabel="teacher")
    fig.tight_layout()
    return _png(fig)


def reliability_bins(conf: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, accuracy and count per equal-width confidence bin (empty bins dropped)."""
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=float)
    b = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    keep = [i for i in range(n_bins) if np.any(b == i)]
    return (np.array([conf[b == i].mean() for i in keep]), np.array([correct[b == i].mean() for i in keep]),
            np.array([(b == i).sum() for i in keep]))


def reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Reliability diagram: per confidence bin, how often the answer was right (name -> (conf, correct))."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfectly calibrated")
    for name, (conf, correct) in curves.items():
        if len(conf):
            mc, acc, n = reliability_bins(conf, correct)
            ax.plot(mc, acc, "o-", ms=4, label=f"{name} (n={len(conf)})")
    ax.set(xlabel="confidence", ylabel="fraction right", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def cascade_curve(thresholds: np.ndarray, agreement: np.ndarray, escalation: np.ndarray, chosen: float | None) -> bytes:
    """Expected agreement with the teacher and escalation rate for each cascade threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    x = np.minimum(thresholds, 1.0)
    ax.step(x, agreement, where="post", label="agreement with teacher")
    ax.step(x, escalation, where="post", label="escalated to teacher")
    if chosen is not None:
        ax.axvline(min(chosen, 1.0), color="k", lw=0.9, ls="--", label=f"threshold {chosen:.3f}")
    ax.set(xlabel="student confidence threshold (escalate below)", ylabel="fraction of documents", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)
