"""PNG learning curves (matplotlib, Agg): accuracy on gold and agreement with the teacher,
against teacher labels and against dollars, one figure per dataset x teacher x student."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .metrics import curves


def plot_slug(*parts: str) -> str:
    """The file-name stem of one dataset/teacher/student's plot."""
    return "_".join("".join(ch if ch.isalnum() else "-" for ch in p) for p in parts)


def plot_curves(rounds: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write one 3-panel PNG per (dataset, teacher, student); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cv = curves(rounds)
    paths = []
    for (ds, teacher, student), g in cv.groupby(["dataset", "teacher", "student"], sort=True):
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=72)
        full = g["full_acc"].dropna()
        for j, (strategy, c) in enumerate(g.groupby("strategy", sort=True)):
            c = c.sort_values("labels_total")
            style = "--" if strategy == "random" else ("-." if strategy.startswith("st_") else "-")
            kw = {"label": strategy, "lw": 1.3, "color": plt.cm.tab20(j % 20)}
            axes[0].plot(c["labels_total"], c["acc"], style, **kw)
            axes[1].plot(c["labels_total"], c["agreement"], style, **kw)
            axes[2].plot(c["dollars"], c["acc"], style, **kw)
        if len(full):
            for ax in (axes[0], axes[2]):
                ax.axhline(full.iloc[0], color="k", lw=0.8, label="full pool")
                ax.axhline(0.98 * full.iloc[0], color="grey", lw=0.6, ls=":", label="98% of full")
        axes[0].set(xlabel="teacher labels", ylabel="test accuracy (gold)")
        axes[1].set(xlabel="teacher labels", ylabel="agreement with teacher (pool)")
        axes[2].set(xlabel="dollars", ylabel="test accuracy (gold)")
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7, ncol=2)
        fig.suptitle(f"{ds} - teacher {teacher} - student {student}", fontsize=10)
        fig.tight_layout()
        p = out / f"{plot_slug(ds, teacher, student)}.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    return paths


def plot_scale(scale: pd.DataFrame, out_dir: str | Path) -> Path:
    """Seconds per selection round against pool size (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=72)
    for strategy, g in scale.groupby("strategy", sort=True):
        g = g.sort_values("pool_size")
        ax.loglog(g["pool_size"], g["select_s"], "o-", label=strategy)
    ax.set(xlabel="pool size", ylabel="seconds per selection round")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "scale.png"
    fig.savefig(p)
    plt.close(fig)
    return p
